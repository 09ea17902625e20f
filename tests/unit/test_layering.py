"""The import direction of DESIGN.md, enforced: import-linter's contracts (pyproject ``[tool.importlinter]``)
read every import, also those inside functions; and importing the engine stays light at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
FORBIDDEN_FOR_ENGINE = ["llmos.server", "llmos.registry", "tokenizers", "pydantic", "fastapi"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the ``llmos`` package under ``root`` with ``root``'s pyproject contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_every_import_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_an_upward_import_inside_a_function_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(REPO / "llmos", tmp_path / "llmos", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    engine = tmp_path / "llmos" / "engine" / "engine.py"
    reach_up = "\n\ndef _reach_up() -> None:\n    import llmos.server.app  # noqa\n"
    engine.write_text(engine.read_text() + reach_up)
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "llmos.engine.engine -> llmos.server.app" in result.stdout


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


def test_importing_the_registry_does_not_import_torch() -> None:
    loaded = modules_after_import("llmos.registry", "llmos.store")
    assert "llmos.registry.registry" in loaded
    assert offenders(loaded, ["torch", "transformers", "llmos.engine", "llmos.runtime"]) == []
