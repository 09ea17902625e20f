"""What a model version is: facts read from its files, without loading any tensor, and the
``Manifest`` built from them plus its ``Origin`` (source, parents, kind) — what the registry stores.

Parses safetensors headers defensively (bounded header, offsets inside the file, sizes that match
shapes) to count parameters and find the dtype, and reads config.json, the tokenizer config and
the sampling defaults of ``generation_config.json``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.registry.manifest import Capabilities, Manifest, ParentLink, SamplingDefaults, StoredFile
from llmos.store.digests import version_digest
from llmos.store.safetensors_header import TORCH_DTYPE_NAMES, read_safetensors_header


def weight_facts(files: dict[str, Path]) -> dict[str, Any]:
    """``parameters`` (sum of tensor sizes) and ``dtype`` (of most parameters) over all safetensors."""
    num_params, by_dtype = 0, Counter[str]()
    for name, path in files.items():
        if not name.endswith(".safetensors"):
            continue
        for info in read_safetensors_header(path).values():
            n = math.prod(info["shape"])
            num_params += n
            by_dtype[info["dtype"]] += n
    dtype = by_dtype.most_common(1)[0][0] if by_dtype else None
    return {"parameters": num_params, "dtype": TORCH_DTYPE_NAMES.get(dtype, dtype) if dtype else None}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def config_facts(files: dict[str, Path]) -> dict[str, Any]:
    """Architecture, model type, context length and chat-template presence from the config files."""
    config = _read_json(files["config.json"]) if "config.json" in files else {}
    text_config = config.get("text_config")
    text_config = text_config if isinstance(text_config, dict) else {}
    tok_config = _read_json(files["tokenizer_config.json"]) if "tokenizer_config.json" in files else {}
    architectures = config.get("architectures") or []
    return {
        "architecture": architectures[0] if architectures else None,
        "model_type": config.get("model_type"),
        "context_length": config.get("max_position_embeddings") or text_config.get("max_position_embeddings"),
        "has_chat_template": bool(tok_config.get("chat_template"))
        or "chat_template.jinja" in files
        or "chat_template.json" in files,
        "is_sentence_transformers": "modules.json" in files,
    }


def generation_defaults(files: dict[str, Path]) -> SamplingDefaults:
    """The sampling values of the folder's ``generation_config.json`` (empty without one), which
    ``llmos run``, the SDK and the HTTP API use when a request leaves them unset — as vLLM does."""
    path = files.get("generation_config.json")
    return SamplingDefaults.from_generation_config(_read_json(path) if path else {})


def infer_kind(facts: dict[str, Any]) -> str:
    """``chat``, ``base``, ``embedding`` or ``other``, from the facts above."""
    arch = facts.get("architecture") or ""
    if facts.get("is_sentence_transformers"):
        return "embedding"
    if arch.endswith(("ForCausalLM", "ForConditionalGeneration")):
        return "chat" if facts.get("has_chat_template") else "base"
    return "other"


def readme_license(files: dict[str, Path]) -> str | None:
    """The ``license:`` of a model card's YAML front matter, if there is one."""
    readme = files.get("README.md")
    if readme is None:
        return None
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")[:20_000]
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    for line in text.split("\n---", 1)[0].splitlines():
        if line.startswith("license:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def read_facts(files: dict[str, Path]) -> dict[str, Any]:
    """Everything the files say about the model (weights, config, tokenizer, model card license).

    Raises ``InvalidModelFile`` when a safetensors header is malformed.
    """
    return {
        **weight_facts(files),
        **config_facts(files),
        "license": readme_license(files),
        "defaults": generation_defaults(files),
    }


@dataclass(slots=True)
class Origin:
    """What the files cannot tell about a new version: how it was made and from what.

    ``extra`` manifest fields (``source``, ``converted_from``, ``base``…, spelled as
    ``Manifest.to_dict`` writes them) override the facts read from the files; ``parents`` are the
    links to the versions it was made from (``ModelVersion.as_parent``).
    """

    action: str = "imported"  # the history event: imported, pulled, copied, merged
    extra: dict[str, Any] = field(default_factory=dict)
    parents: list[ParentLink] = field(default_factory=list)
    kind: str | None = None
    license: str | None = None


def build_manifest(
    name: str,
    facts: dict[str, Any],
    stored: dict[str, tuple[str, int]],
    origin: Origin,
    capabilities: Capabilities | None,
) -> Manifest:
    """The manifest of a version with ``facts`` (``read_facts``) and files ``rel -> (blob hex, size)``.

    ``version`` and ``imported_at`` are set when the version is numbered.
    """
    parents = list(origin.parents)
    converted = origin.extra.get("converted_from")
    if converted and not any(p.relation == "converted_from" for p in parents):
        parents.append(ParentLink(converted["file"], f"sha256:{converted['sha256']}", "converted_from"))
    manifest = Manifest(
        name=name,
        architecture=facts["architecture"],
        model_type=facts["model_type"],
        parameters=facts["parameters"],
        dtype=facts["dtype"],
        context_length=facts["context_length"],
        has_chat_template=facts["has_chat_template"],
        kind=origin.kind or infer_kind(facts),
        license=origin.license or facts["license"],
        parents=parents,
        capabilities=capabilities,
        defaults=facts.get("defaults") or SamplingDefaults(),
        files={rel: StoredFile(f"sha256:{h}", size) for rel, (h, size) in stored.items()},
        size=sum(size for _, size in stored.values()),
        digest=version_digest((rel, h) for rel, (h, _) in stored.items()),
    )
    return manifest.with_fields(origin.extra) if origin.extra else manifest
