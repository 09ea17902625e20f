"""``Manifest``: what a registered model version is and where it came from, as the registry keeps it.

``importing/manifest.py`` builds one from a folder's files; the registry stores its ``to_dict()`` in
the version's row and hands ``from_dict`` of that out as ``ModelVersion.manifest``; ``llmos show
--json``, ``llmos list --json`` and ``/api/models`` print ``to_dict()``. ``from_dict`` reads the
manifests of every release: keys an older release did not write get their defaults, and keys this
one does not model stay in ``extra``, so nothing stored is lost. ``SamplingDefaults`` are the
sampling parameters the model's authors recommend, used wherever a request leaves one unset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# how a version relates to each entry of its manifest's ``parents``
RELATIONS = ("converted_from", "copied_from", "adapter_base", "merged_from", "base")


def _present(items: dict[str, Any]) -> dict[str, Any]:
    """``items`` without the ``None`` values: an optional key is absent, never ``null``."""
    return {k: v for k, v in items.items() if v is not None}


@dataclass(frozen=True, slots=True)
class ParentLink:
    """One entry of ``parents``: the exact ``ref`` (``name:N``, or a converted file's name), its
    ``digest`` and the ``relation`` (one of ``RELATIONS``)."""

    ref: str
    digest: str
    relation: str

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "relation": self.relation}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParentLink:
        return cls(str(data["ref"]), str(data["digest"]), str(data["relation"]))


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of the snapshot: its blob's ``digest`` (``sha256:…``) and ``size`` in bytes."""

    digest: str
    size: int

    @property
    def blob(self) -> str:
        """The blob's hex sha256 (the digest without ``sha256:``)."""
        return self.digest.removeprefix("sha256:")

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredFile:
        return cls(str(data["digest"]), int(data["size"]))


_SOURCE_KEYS = (
    "path", "repo", "revision", "requested_revision", "package", "version", "file", "parts", "sha256",
    "base", "adapter",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where the files came from. ``type`` says which other fields are set: ``path``/``gguf``
    (``path``), ``hub`` (``repo``, ``revision``, ``requested_revision``), ``pypi`` (``package``,
    ``version``, ``file``, or ``parts`` of those; ``sha256``), ``merge`` (``base``, ``adapter``)."""

    type: str
    path: str | None = None
    repo: str | None = None
    revision: str | None = None  # the commit the hub reported
    requested_revision: str | None = None  # what was asked for, when it was not that commit
    package: str | None = None
    version: str | None = None
    file: str | None = None
    parts: list[dict[str, Any]] | None = None  # a model split over wheels: {package, version, file}
    sha256: str | None = None  # of the assembled file, as the catalog lists it
    base: str | None = None
    adapter: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_present({k: getattr(self, k) for k in _SOURCE_KEYS}), **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        known = {k: data[k] for k in _SOURCE_KEYS if data.get(k) is not None}
        extra = {k: v for k, v in data.items() if k != "type" and k not in known}
        return cls(type=str(data.get("type")), **known, extra=extra)


@dataclass(frozen=True, slots=True)
class ConvertedFrom:
    """The file a version was converted from: its name, sha256, format and the facts its header
    gave (``gguf_architecture``, ``num_tensors``…, kept as read)."""

    file: str
    sha256: str
    format: str = "gguf"
    header: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "format": self.format, **self.header}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvertedFrom:
        header = {k: v for k, v in data.items() if k not in ("file", "sha256", "format")}
        return cls(str(data["file"]), str(data["sha256"]), str(data.get("format", "gguf")), header)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterFacts:
    """The LoRA settings of a PEFT adapter, as its ``adapter_config.json`` gives them."""

    peft_type: str | None = None
    r: int | None = None
    lora_alpha: float | None = None
    target_modules: list[str] | str | None = None
    base_model_name_or_path: str | None = None
    task_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterFacts:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


SAMPLING_DEFAULT_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingDefaults:
    """The sampling parameters a model's authors recommend (a ``generation_config.json``, a model
    card, Ollama's Modelfile ``PARAMETER``), in ``SamplingParams``' names; ``None``: not given, so
    the caller's own default applies. ``temperature == 0`` means greedy."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The given values only: what a request that leaves these keys unset gets."""
        return _present({k: getattr(self, k) for k in SAMPLING_DEFAULT_KEYS})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingDefaults:
        """Raises ``ValueError`` for a value no request could use (a hand-edited catalog entry)."""
        values: dict[str, Any] = {}
        for key in SAMPLING_DEFAULT_KEYS:
            value = data.get(key)
            if value is None:
                continue
            if problem := _bad_default(key, value):
                raise ValueError(f"sampling default {key}={value!r} {problem}")
            values[key] = int(value) if key == "top_k" else float(value)
        return cls(**values)

    @classmethod
    def from_generation_config(cls, config: Mapping[str, Any]) -> SamplingDefaults:
        """The sampling values of a transformers ``generation_config.json``, skipping any no request
        could use. An explicit ``do_sample: false`` means greedy, as transformers reads it (whatever
        temperature the file also names); a file without ``do_sample`` says nothing — transformers
        writes only non-default values, and most files omit it."""
        if config.get("do_sample") is False:
            return cls(temperature=0.0)
        usable = {
            k: v for k in SAMPLING_DEFAULT_KEYS if (v := config.get(k)) is not None and not _bad_default(k, v)
        }
        return cls.from_dict(usable)


def _bad_default(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` as the default of ``key`` (the ranges ``SamplingParams`` and the
    HTTP API accept), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "is not a number"
    in_range = {
        "temperature": 0.0 <= value <= 2.0,
        "top_p": 0.0 < value <= 1.0,
        "top_k": value >= 0 and float(value).is_integer(),
        "min_p": 0.0 <= value <= 1.0,
        "repetition_penalty": value > 0.0,
    }[key]
    return None if in_range else "is out of range"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The capability check's report: ``ok``, and the findings the model's kind can show (``error``
    and ``seconds``; ``chat_template``, ``generates`` and ``context_length`` for generation,
    ``dimensions`` for embedding, ``skipped`` for adapters), kept as the probe wrote them."""

    ok: bool
    findings: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """Why the check failed (None when it passed)."""
        error = self.findings.get("error")
        return None if error is None else str(error)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.findings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Capabilities:
        return cls(bool(data.get("ok", False)), {k: v for k, v in data.items() if k != "ok"})


_OPTIONAL = ("source", "converted_from", "base", "base_digest", "adapter", "defaults")
_UNSET = (*_OPTIONAL, "version", "imported_at")  # a stored null stays in ``extra``
_KEYS = frozenset(
    ("name", "format", "architecture", "model_type", "parameters", "dtype", "context_length",
     "has_chat_template", "kind", "license", "datasets", "evaluations", "training_run", *_OPTIONAL,
     "parents", "capabilities", "files", "size", "digest", "version", "imported_at")
)  # fmt: skip
DERIVED_KEYS = ("parents", "capabilities", "files", "size", "digest")
"""Manifest keys computed from the stored files and links, which ``extra`` fields cannot override."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """One version's facts (read from its files), lineage (``source``, ``parents``, ``base``) and
    files. ``version`` and ``imported_at`` are set when the registry numbers it."""

    name: str
    digest: str  # the version digest over (file name, blob) pairs
    files: dict[str, StoredFile] = field(default_factory=dict)
    size: int = 0  # bytes over all files
    format: str = "safetensors"
    architecture: str | None = None  # config.json's architectures[0]
    model_type: str | None = None
    parameters: int | None = None
    dtype: str | None = None  # of most parameters, as torch names it
    context_length: int | None = None
    has_chat_template: bool = False
    kind: str | None = None  # chat, base, embedding, adapter or other
    license: str | None = None
    datasets: list[str] = field(default_factory=list)  # refs (or files) it was trained on
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    training_run: dict[str, Any] | None = None  # the run that made it: data, config, metrics
    source: Source | None = None
    converted_from: ConvertedFrom | None = None
    base: str | None = None  # an adapter's exact base, name:N
    base_digest: str | None = None
    adapter: AdapterFacts | None = None
    parents: list[ParentLink] = field(default_factory=list)
    capabilities: Capabilities | None = None  # None: not checked
    # None: written by a release before manifests carried them (``catalog.sampling_defaults`` fills
    # in a catalog model's); empty: the model recommends nothing
    defaults: SamplingDefaults | None = None
    version: int | None = None
    imported_at: str | None = None  # ISO 8601, UTC
    extra: dict[str, Any] = field(default_factory=dict)  # keys this release does not model

    @property
    def is_adapter(self) -> bool:
        return self.kind == "adapter"

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data (what the registry stores and ``--json`` prints)."""
        optional = {
            "source": self.source.to_dict() if self.source else None,
            "converted_from": self.converted_from.to_dict() if self.converted_from else None,
            "base": self.base,
            "base_digest": self.base_digest,
            "adapter": self.adapter.to_dict() if self.adapter else None,
            "defaults": self.defaults.to_dict() if self.defaults is not None else None,
        }
        return {
            "name": self.name,
            "format": self.format,
            "architecture": self.architecture,
            "model_type": self.model_type,
            "parameters": self.parameters,
            "dtype": self.dtype,
            "context_length": self.context_length,
            "has_chat_template": self.has_chat_template,
            "kind": self.kind,
            "license": self.license,
            "datasets": list(self.datasets),
            "evaluations": list(self.evaluations),
            "training_run": self.training_run,
            **_present(optional),
            **self.extra,
            "parents": [p.to_dict() for p in self.parents],
            "capabilities": self.capabilities.to_dict() if self.capabilities else None,
            "files": {name: f.to_dict() for name, f in self.files.items()},
            "size": self.size,
            "digest": self.digest,
            **_present({"version": self.version, "imported_at": self.imported_at}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """A manifest from ``to_dict`` data of this or an older release (missing keys: defaults)."""

        def nested(key: str, kind: Any) -> Any:
            value = data.get(key)
            return kind.from_dict(value) if isinstance(value, Mapping) else None

        return cls(
            name=str(data["name"]),
            digest=str(data["digest"]),
            files={name: StoredFile.from_dict(f) for name, f in (data.get("files") or {}).items()},
            size=int(data.get("size") or 0),
            format=str(data.get("format", "safetensors")),
            architecture=data.get("architecture"),
            model_type=data.get("model_type"),
            parameters=data.get("parameters"),
            dtype=data.get("dtype"),
            context_length=data.get("context_length"),
            has_chat_template=bool(data.get("has_chat_template", False)),
            kind=data.get("kind"),
            license=data.get("license"),
            datasets=list(data.get("datasets") or []),
            evaluations=list(data.get("evaluations") or []),
            training_run=data.get("training_run"),
            source=nested("source", Source),
            converted_from=nested("converted_from", ConvertedFrom),
            base=data.get("base"),
            base_digest=data.get("base_digest"),
            adapter=nested("adapter", AdapterFacts),
            parents=[ParentLink.from_dict(p) for p in data.get("parents") or []],
            capabilities=nested("capabilities", Capabilities),
            defaults=nested("defaults", SamplingDefaults),
            version=data.get("version"),
            imported_at=data.get("imported_at"),
            extra={k: v for k, v in data.items() if k not in _KEYS or (v is None and k in _UNSET)},
        )

    def with_fields(self, fields: Mapping[str, Any]) -> Manifest:
        """This manifest with ``fields`` (manifest keys, as ``to_dict`` spells them) set; the keys
        derived from the files and links (``DERIVED_KEYS``) are kept."""
        kept = {k: v for k, v in fields.items() if k not in DERIVED_KEYS}
        return Manifest.from_dict({**self.to_dict(), **kept})
