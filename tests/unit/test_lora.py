"""LoRA adapters made with the real ``peft`` library on a tiny llama: llmos merges them at load time
(and into new versions with ``llmos merge``) and generates exactly what transformers + peft
generates; malformed or mismatched adapters are refused with a message naming the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_adapters import build_tiny_base, build_tiny_lora
from tiny_models import build_tiny_llama
from transformers import AutoModelForCausalLM

import llmos
from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidModelFile, InvalidRequest
from llmos.models.loader import load_model
from llmos.models.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraAdapter, merge_into

PROMPT_IDS = [1, 40, 77, 120, 9, 200, 31]
NUM_TOKENS = 12
EOS = 2


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def tiny_lora(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lora(tiny_base, tmp_path_factory.mktemp("lora") / "tiny-lora")


def engine_greedy(model: torch.nn.Module) -> list[int]:
    config = EngineConfig(max_model_len=64, max_num_seqs=2, dtype=torch.float32)
    params = SamplingParams(max_tokens=NUM_TOKENS, temperature=0)
    return Engine(model, config).generate([PROMPT_IDS], params, eos_token_ids=frozenset({EOS}))[0]


def peft_greedy(base_dir: Path, adapter_dir: Path | None) -> list[int]:
    """transformers' greedy tokens, through PEFT's own (unmerged) LoRA forward when an adapter is given."""
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    ids = torch.tensor([PROMPT_IDS])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NUM_TOKENS,
            do_sample=False,
            eos_token_id=EOS,
        )
    return out[0, len(PROMPT_IDS) :].tolist()


def cpu_model(base_dir: Path, adapters: list[LoraAdapter] | None = None) -> torch.nn.Module:
    return load_model(base_dir, torch.float32, torch.device("cpu"), adapters or [])


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "use_rslora": True,
            "alpha_pattern": {"v_proj": 3},
            "target_modules": ["q_proj", "v_proj", "down_proj"],
        },
    ],
    ids=["all-projections", "rslora-alpha-pattern"],
)
def test_adapter_merged_at_load_generates_what_peft_generates(
    config: dict, tiny_base: Path, tmp_path: Path
) -> None:
    adapter_dir = build_tiny_lora(tiny_base, tmp_path / "lora", seed=1, **config)
    adapter = LoraAdapter.from_dir(adapter_dir)
    adapter.check_base(tiny_base)
    ours = engine_greedy(cpu_model(tiny_base, [adapter]))
    assert ours == peft_greedy(tiny_base, adapter_dir)
    assert ours != engine_greedy(cpu_model(tiny_base)), "the adapter should change the greedy output"


def test_merge_into_a_state_dict_equals_peft_merge_and_unload(tiny_base: Path, tiny_lora: Path) -> None:
    from peft import PeftModel

    state = load_file(tiny_base / "model.safetensors")
    merge_into(state, LoraAdapter.from_dir(tiny_lora))
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    expected = PeftModel.from_pretrained(base, tiny_lora).merge_and_unload().state_dict()
    assert state.keys() <= expected.keys()
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, expected[name], msg=name)


def test_adapter_for_another_base_is_refused_naming_the_weight(tiny_lora: Path, tmp_path: Path) -> None:
    other = build_tiny_llama(tmp_path / "other", hidden_size=32, vocab_size=320)
    with pytest.raises(
        InvalidModelFile, match=r"model\.layers\.0\..*\.weight. is \(32, 128\) in the base.*different base"
    ):
        LoraAdapter.from_dir(tiny_lora).check_base(other)


def test_target_module_missing_from_the_base_is_refused(
    tiny_base: Path, tiny_lora: Path, tmp_path: Path
) -> None:
    adapter_dir = Path(shutil.copytree(tiny_lora, tmp_path / "lora"))
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    config["target_modules"] = ["q_proj", "qkv_proj"]
    (adapter_dir / ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(InvalidModelFile, match="target module 'qkv_proj' does not exist"):
        LoraAdapter.from_dir(adapter_dir).check_base(tiny_base)


def test_pickled_adapter_is_refused(tiny_lora: Path, tmp_path: Path) -> None:
    adapter_dir = tmp_path / "lora"
    adapter_dir.mkdir()
    shutil.copy(tiny_lora / ADAPTER_CONFIG, adapter_dir)
    (adapter_dir / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(InvalidModelFile, match=r"adapter_model.bin is a pickle"):
        LoraAdapter.from_dir(adapter_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"use_dora": True}, "use_dora is not supported"),
        ({"peft_type": "IA3"}, "peft_type 'IA3' is not supported"),
        ({"r": 0}, "r must be a positive integer"),
    ],
)
def test_unsupported_adapter_configs_are_refused(
    change: dict, message: str, tiny_lora: Path, tmp_path: Path
) -> None:
    adapter_dir = Path(shutil.copytree(tiny_lora, tmp_path / "lora"))
    config = {**json.loads((adapter_dir / ADAPTER_CONFIG).read_text()), **change}
    (adapter_dir / ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(InvalidModelFile, match=message):
        LoraAdapter.from_dir(adapter_dir)


def test_tensors_other_than_lora_matrices_are_refused(tiny_lora: Path, tmp_path: Path) -> None:
    adapter_dir = Path(shutil.copytree(tiny_lora, tmp_path / "lora"))
    tensors = load_file(adapter_dir / ADAPTER_WEIGHTS)
    tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.zeros(4, 320)
    save_file(tensors, adapter_dir / ADAPTER_WEIGHTS)
    with pytest.raises(InvalidModelFile, match="unsupported tensor .*lora_embedding_A"):
        LoraAdapter.from_dir(adapter_dir)


# ---- through the registry: base+adapter refs, the adapter field, llmos merge -------------------


@pytest.fixture
def home(tmp_path: Path, tiny_base: Path, tiny_lora: Path) -> Path:
    """A store with ``tiny:1`` and ``tiny-lora:1`` (an adapter for it)."""
    from llmos.config import Settings
    from llmos.registry import Registry

    registry = Registry(Settings(home=tmp_path / "home"))
    registry.import_path(tiny_base, "tiny")
    registry.register_adapter(tiny_lora, "tiny-lora", "tiny")
    registry.close()
    return tmp_path / "home"


def sdk_greedy(ref: str, home: Path, **options: str) -> list[int]:
    with llmos.load_model(ref, home=home, dtype="float32", device="cpu", **options) as model:
        return model.complete(PROMPT_IDS, max_tokens=NUM_TOKENS, temperature=0).token_ids


def test_base_plus_adapter_ref_generates_what_peft_generates(
    home: Path, tiny_base: Path, tiny_lora: Path
) -> None:
    expected = peft_greedy(tiny_base, tiny_lora)
    assert sdk_greedy("tiny+tiny-lora", home) == expected
    assert sdk_greedy("tiny", home, adapter="tiny-lora") == expected
    assert sdk_greedy("tiny-lora", home) == expected  # an adapter alone loads on the base it names
    assert sdk_greedy("tiny", home) == peft_greedy(tiny_base, None) != expected


def test_adapter_on_a_different_base_is_refused(home: Path, tmp_path: Path) -> None:
    from llmos.config import Settings
    from llmos.registry import Registry

    registry = Registry(Settings(home=home))
    other = build_tiny_base(tmp_path / "other", initializer_range=0.05)  # same shapes, other weights
    registry.import_path(other, "other")
    registry.close()
    with pytest.raises(InvalidRequest, match=r"tiny-lora:1 was made for tiny:1, not other:1"):
        llmos.load_model("other+tiny-lora", home=home, dtype="float32", device="cpu")


def test_pool_key_of_an_adapter_ref_names_base_and_adapter(home: Path) -> None:
    from llmos.config import Settings
    from llmos.runtime.model_runtime import resolve_model_dir

    name, path, manifest = resolve_model_dir("tiny+tiny-lora", Settings(home=home), allow_path=False)
    assert manifest is not None and manifest.name == "tiny"
    assert name == "tiny+tiny-lora:1" and (path / "config.json").is_file()


def test_merge_registers_a_full_version_that_generates_like_base_plus_adapter(home: Path) -> None:
    from typer.testing import CliRunner

    from llmos.cli.main import app

    result = CliRunner().invoke(
        app, ["merge", "tiny", "tiny-lora", "--name", "tiny-merged"], env={"LLMOS_HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    assert "tiny-merged:1" in result.output
    assert sdk_greedy("tiny-merged", home) == sdk_greedy("tiny+tiny-lora", home)

    from llmos.config import Settings
    from llmos.registry import Registry

    registry = Registry(Settings(home=home))
    merged, base, adapter = (registry.resolve(r) for r in ("tiny-merged", "tiny", "tiny-lora"))
    parents = {(p.ref, p.digest, p.relation) for p in merged.manifest.parents}
    assert {(base.ref, base.digest, "merged_from"), (adapter.ref, adapter.digest, "merged_from")} <= parents
    assert merged.manifest.kind != "adapter" and merged.manifest.dtype == "float32"
    registry.close()
