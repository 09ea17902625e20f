"""The NLP task helpers on a real model (Qwen2.5-Coder-0.5B-Instruct), through the three doors a
developer uses: the in-process SDK, HTTP (``POST /v1/tasks/{task}`` on a live server, and the remote
SDK over it) and the CLI (``llmos task``). Assertions are on behaviour: spans that slice the input,
labels inside the set, code that parses, answers that mention what the text says."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

import llmos
from llmos.errors import InvalidRequest

pytestmark = pytest.mark.integration

MERKEL = "Angela Merkel visited Paris in 2019."


@pytest.fixture(scope="module")
def remote(live_server: str, qwen: object) -> Iterator[object]:
    """The server's Qwen through the remote SDK (``qwen`` makes sure it is pulled)."""
    with llmos.connect(live_server) as client:
        yield client.model("qwen")


def _cli(live_server: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    where = urlparse(live_server)
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_HOST": where.hostname, "LLMOS_PORT": str(where.port)}
    cmd = [sys.executable, "-m", "llmos.cli.main", "task", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


# --- SDK, in-process ---------------------------------------------------------------------------


def test_entities_find_the_person_with_offsets_that_slice_the_input(qwen) -> None:
    entities = qwen.entities(MERKEL)
    assert all(MERKEL[e.start : e.end] == e.text for e in entities)
    people = [e for e in entities if e.label == "PER"]
    assert [p.text for p in people] == ["Angela Merkel"]
    assert any(e.text == "Paris" and e.label == "LOC" for e in entities)


def test_chinese_entities_slice_the_input(qwen) -> None:
    text = "马云在杭州创办了阿里巴巴。"
    entities = qwen.entities(text)
    assert entities and all(text[e.start : e.end] == e.text for e in entities)
    assert {"杭州", "阿里巴巴"} & {e.text for e in entities}


def test_classify_never_leaves_the_label_set_even_when_sampling(qwen) -> None:
    labels = ["sports", "politics", "technology", "food"]
    texts = [
        "The striker scored twice in the final.", "Parliament passed the budget bill.",
        "The new phone has a faster chip.", "This ramen broth simmers for twelve hours.",
        "The senator resigned after the vote.", "A marathon runner broke the record.",
        "The startup released an open-source compiler.", "Bake the bread at 220 degrees.",
        "Elections will be held in May.", "The goalkeeper saved a penalty.",
        "GPUs speed up matrix multiplication.", "Add a pinch of salt to the sauce.",
        "The minister visited the border.", "The tennis match went to five sets.",
        "Quantum computers use qubits.", "Dumplings are steamed or fried.",
        "今天的足球比赛非常精彩。", "政府发布了新的经济政策。",
        "这款笔记本电脑的电池很耐用。", "这道川菜很辣。",
    ]  # fmt: skip
    predicted = [qwen.classify(t, labels=labels, temperature=1.0, seed=i) for i, t in enumerate(texts)]
    assert len(predicted) == 20 and set(predicted) <= set(labels)
    greedy = [qwen.classify(t, labels=labels) for t in texts[:4]]
    assert greedy == ["sports", "politics", "technology", "food"]


def test_sentiment_reads_clear_reviews(qwen) -> None:
    good = qwen.sentiment("I love this phone, the battery lasts for days and the screen is gorgeous.")
    bad = qwen.sentiment("这家餐厅太差了，菜是冷的，服务员也很粗鲁。")
    assert good.label == "positive" and good.score > 0
    assert bad.label == "negative" and bad.score < 0
    assert -1 <= bad.score <= 1 and -1 <= good.score <= 1


def test_code_returns_python_that_parses(qwen) -> None:
    code = qwen.code("a function fib(n) that returns the n-th Fibonacci number")
    tree = ast.parse(code)
    assert any(isinstance(node, ast.FunctionDef) and node.name == "fib" for node in ast.walk(tree))
    assert "```" not in code


def test_translate_chinese_to_english_and_detects_the_source(qwen) -> None:
    english = qwen.translate("我喜欢喝茶。", to="en")
    assert "tea" in english.lower()


def test_answer_quotes_evidence_from_the_context(qwen) -> None:
    context = "The Eiffel Tower was completed in 1889. It is 330 metres tall and stands in Paris."
    answer = qwen.answer("When was the Eiffel Tower completed?", context=context)
    assert "1889" in answer.text
    assert answer.evidence is not None
    assert context[answer.evidence.start : answer.evidence.end] == answer.evidence.text
    assert "1889" in answer.evidence.text


def test_pos_tags_every_word_with_a_upos_tag(qwen) -> None:
    upos = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
            "PUNCT", "SCONJ", "SYM", "VERB", "X"}  # fmt: skip
    text = "The quick brown fox jumps over the lazy dog."
    words = qwen.pos(text)
    assert [w.text for w in words][:3] == ["The", "quick", "brown"]
    assert all(text[w.start : w.end] == w.text and w.tag in upos for w in words)
    assert words[-1].tag == "PUNCT" and {w.tag for w in words if w.text == "fox"} == {"NOUN"}


def test_summarize_is_short_and_on_topic(qwen) -> None:
    text = (
        "Heavy rain fell across the northern valley for three days, and the river rose above its banks "
        "on Friday night. About two hundred families left their homes and slept in the school gym. "
        "No one was hurt, but many farms lost their crops, and the main bridge was closed until "
        "engineers could check it. The regional government promised money to help farmers replant."
    )
    summary = qwen.summarize(text, max_words=30)
    assert any(word in summary.lower() for word in ("flood", "river", "rain"))
    assert len(summary.split()) <= 30 * 1.25 + 5  # asked for, checked, re-asked, at worst cut
    assert summary != text


def test_bad_inputs_are_one_clear_error(qwen) -> None:
    with pytest.raises(InvalidRequest, match="text"):
        qwen.sentiment("")
    with pytest.raises(InvalidRequest, match="labels"):
        qwen.classify("hello", labels=[])
    with pytest.raises(InvalidRequest, match="context"):
        qwen.sentiment("This is long. " * 20000, shard=False)


# --- HTTP and the remote SDK ---------------------------------------------------------------------


def test_http_task_route_batches_items_and_reports_usage(live_server: str, qwen: object) -> None:
    body = {"model": "qwen", "input": [{"text": MERKEL}, {"text": "Tim Cook leads Apple in Cupertino."}]}
    answer = httpx.post(f"{live_server}/v1/tasks/ner", json=body, timeout=600).json()
    assert answer["task"] == "ner" and answer["version"] and len(answer["results"]) == 2
    for item, result in zip(body["input"], answer["results"], strict=True):
        assert result["diagnostics"]["parse_failed"] is False
        for e in result["output"]["entities"]:
            assert item["text"][e["start"] : e["end"]] == e["text"]
    assert answer["usage"]["total_tokens"] > 0
    texts = {e["text"] for e in answer["results"][1]["output"]["entities"]}
    assert "Tim Cook" in texts


def test_http_tasks_are_in_openapi_and_listed(live_server: str) -> None:
    spec = httpx.get(f"{live_server}/openapi.json").json()
    for task in ("translate", "summarize", "qa", "classify", "sentiment", "ner", "pos", "tokenize", "code"):
        assert f"/v1/tasks/{task}" in spec["paths"]
    listed = httpx.get(f"{live_server}/v1/tasks").json()
    assert {t["name"] for t in listed} >= {"ner", "pos", "code"}


def test_http_bad_task_requests_are_400_with_an_openai_error(live_server: str) -> None:
    cases = [
        ("/v1/tasks/sing", {"model": "qwen", "input": {"text": "la"}}, "task"),
        ("/v1/tasks/classify", {"model": "qwen", "input": {"text": "hi", "labels": []}}, "labels"),
        ("/v1/tasks/sentiment", {"model": "qwen", "input": {"text": ""}}, "text"),
    ]
    for path, body, word in cases:
        response = httpx.post(f"{live_server}{path}", json=body, timeout=60)
        assert response.status_code == 400, response.text
        assert word in response.json()["error"]["message"]


def test_every_task_over_http_through_the_remote_sdk(remote) -> None:
    """The nine helpers of ``llmos.connect(url).model("qwen")``, each a POST /v1/tasks/{task}."""
    assert [(e.text, e.label, e.start) for e in remote.entities(MERKEL) if e.label == "PER"] == [
        ("Angela Merkel", "PER", 0)
    ]
    assert remote.classify("The striker scored twice.", labels=["sports", "food"]) == "sports"
    assert remote.sentiment("Absolutely wonderful, I would buy it again.").label == "positive"
    assert "tea" in remote.translate("我喜欢喝茶。", to="en").lower()
    context = "Marie Curie was born in Warsaw in 1867."
    answer = remote.answer("Where was Marie Curie born?", context=context)
    assert "Warsaw" in answer.text and answer.evidence is not None
    assert context[answer.evidence.start : answer.evidence.end] == answer.evidence.text
    tagged = remote.pos("Dogs bark.")
    assert [w.text for w in tagged] == ["Dogs", "bark", "."] and tagged[-1].tag == "PUNCT"
    tokens = remote.tokens("你好，世界")
    assert tokens.ids == remote.tokenize("你好，世界") and [w.text for w in tokens.words][0] == "你好"
    assert all("你好，世界"[t.start : t.end] == t.text for t in tokens.tokens)
    ast.parse(remote.code("a function add(a, b) that returns their sum"))
    news = "The museum reopened on Monday after a two-year renovation. Visitors queued for hours."
    summary = remote.summarize(news, max_words=15)
    assert "museum" in summary.lower()


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_task_prints_entities_and_json(live_server: str, real_home: Path, qwen: object) -> None:
    shown = _cli(live_server, real_home, "ner", "qwen", MERKEL)
    assert shown.returncode == 0, shown.stderr
    assert "Angela Merkel" in shown.stdout and "PER" in shown.stdout
    as_json = json.loads(
        _cli(live_server, real_home, "sentiment", "qwen", "What a wonderful day!", "--json").stdout
    )
    assert as_json["results"][0]["output"]["label"] == "positive"


def test_cli_task_runs_a_file_into_a_file(live_server: str, real_home: Path, tmp_path: Path, qwen) -> None:
    inputs = tmp_path / "reviews.jsonl"
    rows = [
        "Great value, works perfectly.",
        "Broke after one day, waste of money.",
        {"text": "质量很好，很满意。"},
    ]
    inputs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    done = _cli(live_server, real_home, "sentiment", "qwen", "--in", str(inputs), "--out", str(out))
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["output"]["label"] for r in results] == ["positive", "negative", "positive"]
    assert results[2]["input"]["text"] == "质量很好，很满意。"


def test_cli_task_shows_tokens_and_words(live_server: str, real_home: Path, qwen: object) -> None:
    shown = _cli(live_server, real_home, "tokenize", "qwen", "我爱北京天安门")
    assert shown.returncode == 0, shown.stderr
    assert "words: 我 | 爱 | 北京 | 天安门" in shown.stdout and "START" in shown.stdout


def test_cli_task_errors_say_what_to_do(live_server: str, real_home: Path) -> None:
    unknown = _cli(live_server, real_home, "sing", "qwen", "la")
    assert unknown.returncode != 0 and "unknown task" in unknown.stderr and "Traceback" not in unknown.stderr
    empty = _cli(live_server, real_home, "classify", "qwen", "hello", "--labels", "")
    assert empty.returncode == 1 and "labels" in empty.stderr and "Traceback" not in empty.stderr
