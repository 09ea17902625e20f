"""`llmos run` on a tiny imported model: it answers, every expected error is one clear line (exit
code 1, no traceback), and it answers through a running `llmos serve` when there is one — the same
answer, without loading the model — and in-process with `--local` or when none answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tiny_models import build_tiny_chat_folder

from llmos.config import Settings
from llmos.registry import Registry
from tests.conftest import free_port, start_server, wait_healthy

API_KEY = "test-key"
PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-run-home")
    source = build_tiny_chat_folder(tmp_path_factory.mktemp("tiny") / "model")
    Registry(Settings(home=home)).import_path(source, "tiny")
    return home


def llmos(home: Path, *args: str, port: int | None = None, api_key: str = "") -> subprocess.CompletedProcess:
    """Run the CLI; its configured server is on ``port`` (default: a free port, so no server, not
    even one someone runs on 8000)."""
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_DTYPE": "float32", "LLMOS_API_KEYS": api_key}
    env["LLMOS_PORT"] = str(port or free_port())
    cmd = [sys.executable, "-m", "llmos.cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server_port(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real `llmos serve` subprocess on a free loopback port, with the tiny model loaded and an
    API key required."""
    env = {"LLMOS_DTYPE": "float32"}
    logs = tmp_path_factory.mktemp("cli-run-server")
    proc, url = start_server(home, "--model", "tiny", "--api-key", API_KEY, env=env, log_dir=logs)
    try:
        wait_healthy(url, proc, headers={"Authorization": f"Bearer {API_KEY}"})
        yield int(url.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def served_answer(port: int, prompt: str, max_tokens: int) -> str:
    """What the server's chat API answers for the greedy request `llmos run` sends."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0.0}  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


def assert_clean_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip().splitlines()[-1].lower()  # log lines may come first
    assert message.startswith("error:")
    for word in words:
        assert word.lower() in message, result.stderr


def test_run_streams_an_answer(home: Path) -> None:
    result = llmos(home, "run", "tiny", "the capital of france is", "--max-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_unknown_model_says_what_to_do(home: Path) -> None:
    assert_clean_error(llmos(home, "run", "nope", "hi"), "nope", "llmos")


def test_bad_sampling_value_names_it(home: Path) -> None:
    assert_clean_error(llmos(home, "run", "tiny", "hi", "--temperature", "-1"), "temperature")


def test_prompt_too_long_gives_the_numbers(home: Path) -> None:
    result = llmos(home, "run", "tiny", "hello " * 600, "--max-tokens", "5")
    assert_clean_error(result, "512")


def test_corrupted_model_file_is_named(home: Path, tmp_path: Path) -> None:
    registry = Registry(Settings(home=home))
    registry.import_path(build_tiny_chat_folder(tmp_path / "model"), "broken")
    weights = registry.resolve("broken").path / "model.safetensors"
    blob = weights.resolve()
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert_clean_error(llmos(home, "run", "broken", "hi"), "model.safetensors")


def test_unsupported_architecture_is_one_clear_line(home: Path, tmp_path: Path) -> None:
    import transformers

    folder = build_tiny_chat_folder(tmp_path / "bert")
    (folder / "model.safetensors").unlink()
    config = transformers.BertConfig(
        vocab_size=256, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config).save_pretrained(folder)
    Registry(Settings(home=home)).import_path(folder, "bert")
    assert_clean_error(llmos(home, "run", "bert", "hi"), "bert")


def test_run_answers_through_a_running_server(home: Path, server_port: int) -> None:
    result = llmos(home, "run", "tiny", PROMPT, "-n", "8", "--verbose", port=server_port, api_key=API_KEY)
    assert result.returncode == 0, result.stderr
    assert f"using the server at http://127.0.0.1:{server_port}" in result.stderr
    assert result.stdout == served_answer(server_port, PROMPT, 8) + "\n"


def test_run_local_loads_the_model_in_process_with_the_same_answer(home: Path, server_port: int) -> None:
    result = llmos(home, "run", "tiny", PROMPT, "-n", "8", "--local", "-v", port=server_port, api_key=API_KEY)
    assert result.returncode == 0, result.stderr
    assert "--local: running in-process" in result.stderr and "using the server" not in result.stderr
    assert result.stdout == served_answer(server_port, PROMPT, 8) + "\n"


def test_run_without_a_server_falls_back_to_in_process(home: Path) -> None:
    port = free_port()
    result = llmos(home, "run", "tiny", PROMPT, "-n", "5", "--verbose", port=port)
    assert result.returncode == 0, result.stderr
    assert f"no server at http://127.0.0.1:{port}: running in-process" in result.stderr
    assert result.stdout.strip()


def test_run_without_the_servers_api_key_is_one_clear_line(home: Path, server_port: int) -> None:
    assert_clean_error(llmos(home, "run", "tiny", PROMPT, port=server_port), "api key")


def test_run_errors_from_the_server_are_the_same_clear_lines(home: Path, server_port: int) -> None:
    result = llmos(home, "run", "nope", "hi", port=server_port, api_key=API_KEY)
    assert_clean_error(result, "nope")
    result = llmos(home, "run", "tiny", "hi", "--temperature", "-1", port=server_port, api_key=API_KEY)
    assert_clean_error(result, "temperature")


def test_chat_talks_to_the_server_with_history(home: Path, server_port: int) -> None:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_PORT": str(server_port), "LLMOS_API_KEYS": API_KEY}
    cmd = [sys.executable, "-m", "llmos.cli.main", "chat", "tiny", "-t", "0", "-n", "6", "--verbose"]
    result = subprocess.run(cmd, env=env, input="hello\n/exit\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"using the server at http://127.0.0.1:{server_port}" in result.stderr
    assert served_answer(server_port, "hello", 6) in result.stdout


def test_help_does_not_import_torch() -> None:
    code = (
        "import runpy, sys; sys.argv = ['llmos', '--help']\n"
        "try:\n    runpy.run_module('llmos.cli.main', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "serve" in result.stdout
