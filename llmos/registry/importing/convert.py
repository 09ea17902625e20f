"""GGUF -> Hugging Face folder (safetensors + config + tokenizer), done once at import time.

transformers de-quantizes the GGUF to float32 tensors (~15-20 s for 135M parameters); we save the
state dict with safetensors and the config/tokenizer with their own ``save_pretrained`` (the model's
``save_pretrained`` refuses GGUF-loaded models). torch and transformers are imported lazily here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmos.errors import InvalidModelFile, UnsupportedArchitecture

log = logging.getLogger(__name__)


def check_gguf(path: Path) -> dict[str, Any]:
    """Parse the GGUF header and tensor table; raise ``InvalidModelFile`` if it cannot be read."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path), "r")
        field = reader.get_field("general.architecture")
        arch = field.contents() if field is not None else None
        num_tensors = len(reader.tensors)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors, ...
        raise InvalidModelFile(f"{path.name} is not a readable GGUF file: {exc}") from None
    if num_tensors == 0:
        raise InvalidModelFile(f"{path.name} is a GGUF file without tensors")
    return {"gguf_architecture": arch, "num_tensors": num_tensors}


def _clean_config(config_path: Path, architecture: str) -> None:
    """Drop the GGUF quantization marker and record the architecture so the folder loads plainly."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    config.pop("_model_name_or_path", None)
    config["architectures"] = [architecture]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def convert_gguf(path: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``path`` (a GGUF file) as a float32 Hugging Face folder into ``out_dir``.

    Returns facts from the GGUF header. Raises ``InvalidModelFile`` or ``UnsupportedArchitecture``.
    """
    facts = check_gguf(path)
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, NotImplementedError) as exc:
        if "not supported" in str(exc) or "architecture" in str(exc):
            raise UnsupportedArchitecture(
                f"cannot convert {path.name}: {exc} (architecture {facts['gguf_architecture']!r})"
            ) from None
        raise InvalidModelFile(f"cannot convert {path.name}: {exc}") from None
    except Exception as exc:
        raise InvalidModelFile(f"cannot convert {path.name}: {type(exc).__name__}: {exc}") from None

    out_dir.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    output = model.get_output_embeddings()
    is_tied = getattr(model.config, "tie_word_embeddings", False) or (
        output is not None and output.weight is model.get_input_embeddings().weight
    )
    if is_tied:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(out_dir)
    _clean_config(out_dir / "config.json", type(model).__name__)
    tokenizer.save_pretrained(out_dir)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)
    log.info("converted %s: %d tensors, tied embeddings=%s", path.name, len(tensors), is_tied)
    return facts
