"""The store on a real PostgreSQL server: the layout `docs/deploy.md` gives for a local llmos and
a cloud cluster sharing one registry (`LLMOS_DATABASE_URL=postgresql+psycopg://...`).

A throwaway server per module: Debian's PostgreSQL (`initdb` + `pg_ctl`, run as `nobody` when the
tests run as root, as CI does), trust authentication on a loopback port, data in a temp folder.
The CLI imports a model and makes a key, `llmos serve` answers the real `openai` client with
that key, and `llmos usage` reads back what the server wrote — all through PostgreSQL, with no
SQLite file in the home. Migrations on a fresh database run once even when three processes open
it together (the advisory lock).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from sqlalchemy import create_engine, inspect, text

from llmos.store import migrate
from tests.conftest import free_port, start_server, wait_healthy
from tests.unit.tiny_models import build_tiny_chat_folder

pytestmark = pytest.mark.integration

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))  # Debian keeps initdb off the PATH
NO_POSTGRES = "PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)"


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as nobody then."""
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A running PostgreSQL server; yields the SQLAlchemy URL of its ``postgres`` database."""
    if not BINARIES:
        pytest.skip(NO_POSTGRES)
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'llmos[postgres]')")
    bin_dir = Path(BINARIES[-1])
    root = Path(tempfile.mkdtemp(prefix="llmos-pg-"))  # not under pytest's root-only tmp folders
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    data, port = root / "data", free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "llmos", "--auth=trust", "-E", "UTF8"]
    subprocess.run(_as_server_user(initdb), check=True, capture_output=True)
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log")]
    options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off"
    subprocess.run(_as_server_user([*pg_ctl, "-o", options, "-w", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://llmos@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _llmos(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "llmos.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_cli_and_server_share_one_registry_in_postgres(postgres: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"LLMOS_HOME": str(home), "LLMOS_DATABASE_URL": postgres}
    folder = build_tiny_chat_folder(tmp_path / "tiny")
    _llmos(env, "import", str(folder), "--name", "tiny")
    key = json.loads(
        _llmos(env, "keys", "create", "--name", "app1", "--scopes", "inference,metrics", "--json").stdout
    )
    listed = json.loads(_llmos(env, "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["tiny"]

    proc, url = start_server(home, "-m", "tiny", log_dir=tmp_path, env=env)
    try:
        wait_healthy(url, proc, headers={"Authorization": f"Bearer {key['key']}"})
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key["key"])
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
        )
        assert chat.usage is not None and chat.usage.completion_tokens >= 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="llmos-nope.nope").models.list()
    finally:
        proc.terminate()
        proc.wait(30)

    usage = json.loads(_llmos(env, "usage", "--by", "key", "--json").stdout)
    rows = [row for row in usage if row.get("key") == key["id"]]
    assert rows and rows[0]["requests"] == 1, usage
    assert rows[0]["completion_tokens"] == chat.usage.completion_tokens
    assert not list(home.glob("*.db")), "a SQLite file was made beside the PostgreSQL registry"
    engine = create_engine(postgres)
    try:
        with engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.HEAD
            assert {"api_keys", "usage_records", "model_versions", "batches"} <= set(
                inspect(conn).get_table_names()
            )
    finally:
        engine.dispose()


def test_three_processes_migrating_a_fresh_database_at_once(postgres: str) -> None:
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS fresh"))
        conn.execute(text("CREATE DATABASE fresh"))
    admin.dispose()
    url = postgres.rsplit("/", 1)[0] + "/fresh"
    opener = "import sys; from llmos.store.db import Store; Store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", opener, url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.HEAD
            assert conn.execute(text(f"SELECT count(*) FROM {migrate.VERSION_TABLE}")).scalar() == 1
    finally:
        engine.dispose()
