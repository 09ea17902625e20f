"""The store's schema under Alembic: a store made by llmos 0.1.0 (``tests/fixtures/store-0.1.0``,
built by ``tests/fixtures/make_old_store.py`` with that release's code) opens with everything
intact; a new store and an upgraded one have the same schema; one engine per URL per process,
migrated once, safe across processes and forks."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from typer.testing import CliRunner

from llmos.cli.models import register
from llmos.config import Settings
from llmos.data.dataset_store import DatasetStore
from llmos.errors import CorruptArtifact
from llmos.evaluate.results import ResultStore
from llmos.registry import Registry
from llmos.store import Store, db, metadata, migrate
from llmos.train.jobs import JobStore

REPO_ROOT = Path(__file__).resolve().parents[2]
OLD_STORE = REPO_ROOT / "tests" / "fixtures" / "store-0.1.0"


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    """A private copy of the 0.1.0 store, not yet opened by today's code."""
    return Path(shutil.copytree(OLD_STORE, tmp_path / "old"))


def _url(home: Path) -> str:
    return Settings(home=home).database_url


def _revision(home: Path) -> str | None:
    with sqlite3.connect(home / "llmos.db") as con:
        tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" not in tables:
            return None
        return con.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def _cli(home: Path, *args: str) -> str:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, list(args), env={"LLMOS_HOME": str(home), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_store_made_by_0_1_0_opens_with_every_model_dataset_job_and_result(old_home: Path) -> None:
    assert _revision(old_home) is None
    settings = Settings(home=old_home)
    registry = Registry(settings)
    assert [mv.ref for mv in registry.list()] == ["tiny:1", "tiny:2"]
    assert registry.resolve("tiny@prod").ref == registry.resolve("tiny").ref == "tiny:2"
    assert registry.resolve("tiny:2").aliases == ("latest", "prod")
    assert registry.resolve("tiny:2").manifest.to_dict()["description"] == "again"  # an extra field
    assert [e.action for e in registry.history("tiny").events].count("imported") == 2
    report = registry.verify_all()
    assert report.is_ok and report.refs == ["tiny:1", "tiny:2"], [p.message for p in report.problems]
    assert _revision(old_home) == migrate.HEAD

    shown = json.loads(_cli(old_home, "show", "tiny@prod", "--json"))
    assert shown["aliases"] == ["latest", "prod"] and shown["evaluations"][0]["metrics"] == {"ppl": 42.5}
    assert [m["ref"] for m in json.loads(_cli(old_home, "list", "--json"))] == ["tiny:1", "tiny:2"]

    with DatasetStore(settings, recover=False) as datasets:
        assert [v.ref for v in datasets.list()] == ["reviews:1", "reviews:2"]
        assert sum(t.num_rows for t in datasets.read_all(datasets.resolve("reviews:2")).values()) == 8
        labels = datasets.annotations.list(datasets.resolve("reviews:1"))
        assert [(a.row_id, a.label, a.annotator) for a in labels] == [(0, "pos", "ann")]

    jobs = JobStore(settings)
    [job] = jobs.all()
    assert job.status == "succeeded" and job.result == {"model": "tiny-lora:1"}
    assert job.config["base"] == "tiny:1" and jobs.losses(job.id) == [(1, 2.5), (2, 2.25)]

    [result] = ResultStore(settings).for_model("tiny:2")
    assert (result.suite, result.task, result.metrics) == ("smoke", "ppl", {"ppl": 42.5})
    assert result.model_digest == registry.resolve("tiny:2").digest

    registry.import_path(registry.resolve("tiny:1").path, "tiny", check=False)  # and it takes writes
    assert [mv.ref for mv in registry.list()] == ["tiny:1", "tiny:2", "tiny:3"]


def _differences(url: str) -> tuple[list[object], dict[str, dict[str, list[object]]]]:
    with Store(url).engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata), migrate.schema_of(conn)


def test_a_new_store_and_an_upgraded_0_1_0_store_have_the_same_schema(old_home: Path, tmp_path: Path) -> None:
    new_diff, new_schema = _differences(_url(tmp_path / "new"))
    old_diff, old_schema = _differences(_url(old_home))
    assert new_diff == [] and old_diff == []
    assert new_schema == old_schema and set(new_schema) == set(metadata.tables)


def test_the_newest_migration_is_head(tmp_path: Path) -> None:
    with Store(_url(tmp_path / "home")).engine.connect() as conn:
        script = ScriptDirectory.from_config(migrate.alembic_config(conn))
        assert script.get_current_head() == migrate.HEAD
        assert migrate.current_revision(conn) == migrate.HEAD


def test_an_old_store_missing_tables_it_never_used_gets_them(old_home: Path) -> None:
    with sqlite3.connect(old_home / "llmos.db") as con:  # 0.1.0 made a table when a command used it
        for table in ("train_metrics", "train_jobs", "eval_results", "dataset_annotations"):
            con.execute(f"DROP TABLE {table}")
    registry = Registry(Settings(home=old_home))
    assert [mv.ref for mv in registry.list()] == ["tiny:1", "tiny:2"] and registry.verify_all().is_ok
    assert JobStore(Settings(home=old_home)).all() == []
    assert _revision(old_home) == migrate.HEAD
    assert _differences(_url(old_home))[0] == []


def test_an_old_store_whose_tables_differ_is_refused_and_left_alone(old_home: Path) -> None:
    with sqlite3.connect(old_home / "llmos.db") as con:
        con.execute("ALTER TABLE models ADD COLUMN surprise INTEGER")
    with pytest.raises(CorruptArtifact, match="models differ"):
        Store(_url(old_home))
    assert _revision(old_home) is None


def test_stores_of_one_url_share_one_engine_and_close_without_breaking_each_other(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    registry, jobs, results = Registry(settings), JobStore(settings), ResultStore(settings)
    assert registry.store.engine is jobs.store.engine is results.store.engine
    registry.close()
    registry.close()  # twice: harmless
    assert jobs.all() == [] and results.for_model("x") == []
    jobs.close()
    results.close()
    again = Registry(settings)
    assert again.store.engine is jobs.store.engine and again.list() == []


def test_only_the_most_recently_used_idle_databases_keep_connections(tmp_path: Path) -> None:
    stores = [Store(_url(tmp_path / f"home{i}")) for i in range(db.MAX_NUM_IDLE + 1)]
    for store in stores:
        with store.session() as session:
            session.execute(text("SELECT 1"))
        store.close()
    assert [s.engine.pool.checkedin() for s in stores] == [0] + [1] * db.MAX_NUM_IDLE
    with stores[0].session() as session:  # a closed pool reconnects on the next open
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_opening_migrates_once_per_process_per_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _url(tmp_path / "home")
    Store(url).close()

    def fail(*_: object) -> None:
        raise AssertionError("migrations checked again")

    monkeypatch.setattr(migrate, "is_current", fail)
    monkeypatch.setattr(migrate, "upgrade", fail)
    with Store(url).session() as session:
        assert session.execute(text("SELECT COUNT(*) FROM models")).scalar() == 0


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    code = "import sys; from llmos.store import Store; Store(sys.argv[1]).session().__enter__()"
    url = _url(tmp_path / "home")
    env = {"PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, url], env=env) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert _revision(tmp_path / "home") == migrate.HEAD


def _child_engine_id(url: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = Store(url)
    with store.session() as session:
        session.execute(text("SELECT 1"))
    queue.put(id(store.engine))


def test_a_forked_child_gets_its_own_engine(tmp_path: Path) -> None:
    url = _url(tmp_path / "home")
    parent = Store(url)
    with parent.session():
        pass
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_engine_id, args=(url, queue))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and queue.get(timeout=5) != id(parent.engine)
    with parent.session() as session:  # the parent's connections are untouched
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_nothing_outside_the_migrations_creates_tables() -> None:
    migrations = REPO_ROOT / "llmos" / "store" / "migrations" / "versions"
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "llmos").rglob("*.py")
        if path.parent != migrations
        and ("create_all(" in path.read_text() or "create_table(" in path.read_text())
    ]
    assert offenders == []
    assert db.Store is Store
