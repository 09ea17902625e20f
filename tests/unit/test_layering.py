"""The import rule of DESIGN.md: ``engine/`` never imports the server, the registry, tokenizers or
pydantic; and importing the engine does not pull in transformers (the model loader imports it lazily)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN_FOR_ENGINE = ["llmos.server", "llmos.registry", "tokenizers", "pydantic", "fastapi"]


def modules_after_import(*modules: str) -> set[str]:
    """Every module in ``sys.modules`` after importing ``modules`` in a fresh interpreter."""
    code = f"import sys, {', '.join(modules)}; import json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def offenders(loaded: set[str], packages: list[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in packages))


def test_engine_imports_neither_server_registry_tokenizers_nor_pydantic() -> None:
    loaded = modules_after_import("llmos.engine.async_engine", "llmos.engine.engine")
    assert "llmos.engine.engine" in loaded
    assert offenders(loaded, FORBIDDEN_FOR_ENGINE) == []


def test_importing_the_engine_does_not_import_transformers() -> None:
    loaded = modules_after_import("llmos.engine.engine")
    assert "llmos.engine.engine" in loaded
    assert offenders(loaded, ["transformers"]) == []
