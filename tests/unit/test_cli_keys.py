"""``llmos keys``, ``llmos usage`` and ``llmos audit`` in-process (Typer's CliRunner) on an empty home:
the secret printed once, JSON for scripts, a clear message for bad input, and usage/audit read
back from the store a server writes to."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from llmos.access.keys import KeyStore
from llmos.access.usage import UsageLog
from llmos.cli.main import app
from llmos.config import Settings
from llmos.store import Store


def llmos(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"LLMOS_HOME": str(home), "COLUMNS": "160"})
    return result.exit_code, result.output


def test_create_list_show_rotate_revoke(isolated_home: Path) -> None:
    code, out = llmos(
        isolated_home, "keys", "create", "--name", "app1", "--scopes", "inference,models:read",
        "--models", "smollm2,qwen", "--rpm", "60", "--tpm", "20000", "--model-limit", "qwen:rpm=10",
        "--budget", "1000000/month", "--json",
    )  # fmt: skip
    assert code == 0, out
    made = json.loads(out)
    assert made["key"].startswith(f"llmos-{made['id']}.") and made["models"] == ["smollm2", "qwen"]
    assert made["limits"] == {"rpm": 60, "tpm": 20000} and made["model_limits"] == {"qwen": {"rpm": 10}}
    settings = Settings(home=isolated_home)
    store = KeyStore(settings)
    assert store.authenticate(made["key"]).id == made["id"]
    code, out = llmos(isolated_home, "keys", "list")
    assert code == 0 and made["id"] in out and "rpm=60" in out and "1000000/month" in out
    assert made["key"].split(".")[1] not in out  # never the secret again
    code, out = llmos(isolated_home, "keys", "rotate", made["id"])
    assert code == 0 and "only time the key is shown" in out
    new_key = next(line.split()[-1] for line in out.splitlines() if line.startswith("key "))
    assert store.authenticate(new_key).id == made["id"]
    code, out = llmos(isolated_home, "keys", "revoke", made["id"])
    assert code == 0 and "revoked" in out
    code, out = llmos(isolated_home, "keys", "list", "--all", "--json")
    assert [k["status"] for k in json.loads(out)] == ["revoked"]
    code, out = llmos(isolated_home, "audit", "--json")
    actions = [e["action"] for e in json.loads(out)]
    assert actions == ["key.revoked", "key.rotated", "key.created"]
    store.close()


def test_bad_input_is_one_clear_line(isolated_home: Path) -> None:
    code, out = llmos(isolated_home, "keys", "create", "--name", "x", "--scopes", "root")
    assert code == 1 and "Unknown scope(s) root" in out and "Traceback" not in out
    code, out = llmos(isolated_home, "keys", "create", "--name", "x", "--budget", "lots")
    assert code == 1 and "budget" in out.lower() and "Traceback" not in out
    code, out = llmos(isolated_home, "keys", "show", "knope")
    assert code == 1 and "No key 'knope'" in out
    code, out = llmos(isolated_home, "usage", "--since", "yesterday-ish")
    assert code == 1 and "--since" in out


def test_usage_by_day_model_and_key_as_table_json_and_csv(isolated_home: Path) -> None:
    settings = Settings(home=isolated_home)
    store = Store(settings.database_url)
    rows = [
        {"created_at": datetime(2026, 12, 1, 10, tzinfo=UTC),
         "day": "2026-12-01", "request_id": f"r{i}", "key_id": "ka" if i % 2 else "kb",
         "route": "/v1/chat/completions",
         "model": "qwen:1" if i < 3 else "smollm2:1", "status": 200 if i != 4 else 429, "error_code": None,
         "prompt_tokens": 10, "cached_tokens": 0, "completion_tokens": i, "queue_ms": 1.0, "ttft_ms": 2.0,
         "e2e_ms": 3.0, "finish_reason": "stop"}
        for i in range(6)
    ]  # fmt: skip
    UsageLog(store).write(rows)
    store.close()
    code, out = llmos(isolated_home, "usage", "--by", "model", "--json")
    assert code == 0, out
    by_model = {r["model"]: r for r in json.loads(out)}
    assert by_model["qwen:1"]["completion_tokens"] == 0 + 1 + 2 and by_model["smollm2:1"]["errors"] == 1
    code, out = llmos(isolated_home, "usage", "--by", "key", "--key", "ka", "--csv")
    assert out.splitlines()[0].startswith("key,requests,errors") and out.splitlines()[1].startswith("ka,3,")
    code, out = llmos(isolated_home, "usage")
    assert code == 0 and "2026-12-01" in out and "PROMPT" in out
