"""``llmos pull hf:ORG/REPO[@revision]``: fetch a model repo from the Hugging Face hub and import it.

Only safe files are downloaded (safetensors, JSON, tokenizer and template files; pickles only with
``allow_pickle``), into a work folder in the store's temp area, at the commit the revision resolves
to; the folder is then imported like a local one, with the repo and commit recorded as its source.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidModelFile, InvalidModelName, ModelNotFound, SourceUnavailable
from llmos.registry.importing.folders import read_config
from llmos.registry.model_version import ModelVersion
from llmos.registry.sources.progress import ByteProgress, RichProgress
from llmos.store.names import MAX_NAME_LEN, validate_name

if TYPE_CHECKING:
    from llmos.registry.registry import Registry

log = logging.getLogger(__name__)

SPEC_RE = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
SAFE_PATTERNS = [
    "*.safetensors", "*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*", "README.md",
]  # fmt: skip
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth"]
OFFLINE_HINT = "set HF_ENDPOINT to a reachable mirror, or import a local folder with `llmos import`"


@dataclass(frozen=True, slots=True)
class HubSpec:
    """A parsed ``hf:ORG/REPO[@revision]``."""

    repo: str
    revision: str | None = None

    @property
    def default_name(self) -> str:
        """The repo name as a registry name: lowercased, other characters turned into ``-``."""
        name = re.sub(r"[^a-z0-9._-]+", "-", self.repo.split("/")[1].lower())
        name = re.sub(r"\.{2,}", ".", name).lstrip("._-")[:MAX_NAME_LEN]
        return validate_name(name or "model")


def parse_spec(spec: str) -> HubSpec:
    """Parse ``hf:ORG/REPO`` or ``hf:ORG/REPO@revision``; raises ``InvalidModelName``."""
    match = SPEC_RE.fullmatch(spec.strip()) if isinstance(spec, str) else None
    if match is None or ".." in spec:
        raise InvalidModelName(
            f"invalid hub reference {spec!r}: use hf:ORG/REPO or hf:ORG/REPO@revision "
            "(e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct)",
            param="name",
        )
    return HubSpec(match["repo"], match["revision"])


def pull_hub(
    registry: Registry, spec: str, progress: bool | ByteProgress = False, *, name: str | None = None
) -> ModelVersion:
    """Download ``spec`` and register it as the next version of ``name`` (default: the repo name).

    Raises ``InvalidModelName``, ``ModelNotFound`` (no such repo or revision, or a gated one),
    ``SourceUnavailable`` (the hub cannot be reached) or what ``import_path`` raises (pickles,
    remote code, not a model folder).
    """
    hub = parse_spec(spec)
    name = validate_name(name or hub.default_name)
    commit = _resolve_commit(hub)
    patterns = SAFE_PATTERNS + (PICKLE_PATTERNS if registry.settings.allow_pickle else [])
    show_progress = progress is True or isinstance(progress, RichProgress)
    with registry.blobs.work_dir() as work:
        folder = work / "hub"
        # config.json first: refuse remote-code repos before downloading gigabytes
        _download(hub, commit, folder, ["config.json"], show_progress=False)
        config = read_config(folder) if (folder / "config.json").is_file() else {}
        if "auto_map" in config and not registry.settings.trust_remote_code:
            raise InvalidModelFile(
                f"{hub.repo} needs custom model code (auto_map in config.json); llmos does not run "
                "code from model repos unless trust_remote_code is enabled (LLMOS_TRUST_REMOTE_CODE=1)"
            )
        _download(hub, commit, folder, patterns, show_progress=show_progress)
        source = {"type": "hub", "repo": hub.repo, "revision": commit}
        if hub.revision and hub.revision != commit:
            source["requested_revision"] = hub.revision
        return registry.import_path(folder, name, extra={"source": source})


def _resolve_commit(hub: HubSpec) -> str:
    """The commit sha ``hub.revision`` (default branch when None) points to now."""
    from huggingface_hub import HfApi

    info = _call_hub(hub, lambda: HfApi().model_info(hub.repo, revision=hub.revision))
    sha = getattr(info, "sha", None)
    if not sha:
        raise SourceUnavailable(f"the hub did not report a commit for {hub.repo}@{hub.revision or 'main'}")
    return str(sha)


def _download(hub: HubSpec, commit: str, folder: Path, patterns: list[str], *, show_progress: bool) -> None:
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {"revision": commit, "local_dir": folder, "allow_patterns": patterns}
    if not show_progress:
        kwargs["tqdm_class"] = _silent_tqdm()
    _call_hub(hub, lambda: snapshot_download(hub.repo, **kwargs))
    log.info("downloaded %s@%s into %s", hub.repo, commit[:12], folder)


def _call_hub(hub: HubSpec, call: Any) -> Any:
    """Run a hub call, turning its errors into llmos ones that say what to do."""
    from huggingface_hub import errors

    where = f"{hub.repo}@{hub.revision}" if hub.revision else hub.repo
    try:
        return call()
    except errors.GatedRepoError:
        raise ModelNotFound(
            f"{where} is gated: accept its terms on huggingface.co and set HF_TOKEN", param="model"
        ) from None
    except errors.RepositoryNotFoundError:
        raise ModelNotFound(
            f"no model repo {hub.repo} on the Hugging Face hub (or it is private: set HF_TOKEN)",
            param="model",
        ) from None
    except errors.RevisionNotFoundError:
        raise ModelNotFound(f"{hub.repo} has no revision {hub.revision!r}", param="model") from None
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise SourceUnavailable(
            f"cannot reach the Hugging Face hub for {where}: {_first_line(exc)}; {OFFLINE_HINT}"
        ) from None


def _is_network_error(exc: Exception) -> bool:
    """Offline mode, DNS, refused connections, timeouts, HTTP errors: anything from the transport
    (hub errors are OSErrors; the HTTP client's own errors come from httpx or requests)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError | TimeoutError) or module in ("httpx", "httpx2", "requests", "urllib3")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": .")


def _silent_tqdm() -> Any:
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm
