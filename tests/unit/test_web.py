"""The web console through the real app (TestClient): every page renders with the strict CSP, the
pages and assets are open (they hold no data) while the API behind them still wants a key, nothing
the browser loads names an outside host, the vendored files match their manifest, and each page's
HTML + JS + CSS stays under 300 KB."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmos.access.keys import KeyStore
from llmos.config import Settings
from llmos.explain import METHODS
from llmos.server.app import create_app
from llmos.web import vendor
from llmos.web.console import CSP, PAGES, STATIC_DIR, catalogue

TEMPLATES = Path(vendor.__file__).parent / "templates"
LOCAL = re.compile(r"^(https?:)?//(127\.0\.0\.1|localhost)([:/]|$)")
PAGE_WEIGHT_LIMIT = 300 * 1024


@pytest.fixture
def client(isolated_home: Path) -> Iterator[TestClient]:
    settings = Settings(home=isolated_home, dtype="float32")
    store = KeyStore(settings)  # a stored key: the server now requires keys
    store.create("someone", ["inference"], actor="test")
    store.close()
    with TestClient(create_app(settings)) as c:
        yield c


def _assets(html: str) -> list[str]:
    return re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)


def test_every_page_renders_with_the_strict_csp_and_without_a_key(client: TestClient) -> None:
    for path in [p.path for p in PAGES] + ["/docs"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        for asset in _assets(response.text):
            assert client.get(asset).status_code == 200, (path, asset)
    assert client.get("/api/models").status_code == 401  # the data still needs a key
    assert client.get("/openapi.json").status_code == 401


def test_templates_have_no_inline_script_or_style(client: TestClient) -> None:
    for path in [p.path for p in PAGES] + ["/docs"]:
        html = client.get(path).text
        assert " style=" not in html and "<style" not in html, path
        for script in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            assert "src=" in script[0] and not script[1].strip(), (path, script)
        assert not re.search(r"\son[a-z]+=", html), path  # no onclick= handlers


def _outside_urls_in_html(html: str) -> list[str]:
    urls = re.findall(r'(?:src|href|action|content)\s*=\s*["\']([^"\']+)', html)
    return [u for u in urls if re.match(r"^(https?:)?//", u) and not LOCAL.match(u)]


# What makes a browser fetch in JS and CSS: url(), @import, import / import(), fetch(), workers,
# EventSource, source maps. Vendored libraries also hold inert URLs in comments and messages
# (licence links, swagger's docs links): those do not load anything, so they are not matched.
LOADERS = re.compile(
    r"""(?:url\(\s*|@import\s+|\bimport\s*\(\s*|\bfrom\s+|\bfetch\(\s*|importScripts\(\s*|"""
    r"""new\s+(?:Worker|SharedWorker|EventSource|WebSocket)\(\s*|sourceMappingURL=)["']?((?:https?:|wss?:)?//[^"')\s]+)"""
)


def test_no_page_or_asset_refers_to_an_outside_host(client: TestClient) -> None:
    assert LOADERS.findall('fetch("https://cdn.example/x.js"); a{b:url(//fonts.example/f)}') == [
        "https://cdn.example/x.js",
        "//fonts.example/f",
    ]
    for template in TEMPLATES.glob("*.html"):
        assert _outside_urls_in_html(template.read_text()) == [], template.name
    for page in [p.path for p in PAGES] + ["/docs"]:
        assert _outside_urls_in_html(client.get(page).text) == [], page
    served = [p for p in STATIC_DIR.rglob("*") if p.suffix in (".js", ".css")]
    assert len(served) >= 10
    for path in served:
        text = client.get("/static/" + path.relative_to(STATIC_DIR).as_posix()).text
        outside = [u for u in LOADERS.findall(text) if not LOCAL.match(u)]
        assert outside == [], path.name


def test_vendored_files_match_their_manifest() -> None:
    assert vendor.check() == []
    names = {e["package"] for e in json.loads(vendor.MANIFEST.read_text())["files"]}
    assert names == {"htmx.org", "htmx-ext-sse", "uplot", "swagger-ui-dist"}


def test_vendor_check_names_a_changed_file(tmp_path: Path) -> None:
    for path in vendor.VENDOR_DIR.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "htmx.min.js").write_text("tampered")
    (tmp_path / "extra.js").write_text("")
    problems = vendor.check(tmp_path)
    assert any(p.startswith("htmx.min.js: sha256 differs") for p in problems)
    assert "extra.js: not in MANIFEST.json" in problems


def page_weights(client: TestClient) -> dict[str, int]:
    """Bytes of each console page's HTML plus every script and stylesheet it references."""
    weights = {}
    for page in PAGES:
        html = client.get(page.path).text
        weights[page.path] = len(html.encode()) + sum(len(client.get(a).content) for a in _assets(html))
    return weights


def test_each_page_weighs_under_300_kb(client: TestClient) -> None:
    # /docs is FastAPI's Swagger UI (about 1.7 MB of vendored JS and CSS), not a console page.
    weights = page_weights(client)
    print(weights)
    assert all(w < PAGE_WEIGHT_LIMIT for w in weights.values()), weights


def test_nav_lists_only_pages_that_exist(client: TestClient) -> None:
    html = client.get("/").text
    links = re.findall(r'<li data-scope="[^"]+" hidden><a href="([^"]+)"', html)
    assert links == [p.path for p in PAGES]
    assert client.get("/ui/nothing-here").status_code == 404


def test_strings_come_from_the_catalogue_in_english_and_chinese(client: TestClient) -> None:
    assert "offline: no outbound requests" in client.get("/").text
    assert "离线" in client.get("/?lang=zh").text


CATALOGUE_KEY = re.compile(r"""\bt\(\s*["']([a-z0-9_]+)["']\s*\)""")


def test_every_string_key_the_pages_use_is_in_the_catalogues() -> None:
    # t("key") of a missing key shows the raw key on the page; the Chinese catalogue may only
    # translate keys the English one has (anything else is a typo nobody sees).
    english = catalogue("en")
    chinese = json.loads((Path(vendor.__file__).parent / "i18n" / "zh.json").read_text())
    used: dict[str, set[str]] = {}
    for path in [*TEMPLATES.glob("*.html"), *STATIC_DIR.glob("*.js")]:
        used[path.name] = set(CATALOGUE_KEY.findall(path.read_text()))
    assert {"datasets", "token_lengths", "label_balance"} <= used["datasets.html"]
    missing = {name: keys - english.keys() for name, keys in used.items() if keys - english.keys()}
    assert missing == {}
    assert chinese.keys() == english.keys()  # the Chinese catalogue is complete: no English fallback shows


def test_the_datasets_page_is_in_the_nav_and_speaks_chinese(client: TestClient) -> None:
    english = client.get("/ui/datasets").text
    assert '<li data-scope="datasets" hidden><a href="/ui/datasets"' in english
    for text in ("Token lengths", "Label balance", "Preview", 'src="/static/datasets.js"'):
        assert text in english
    chinese = client.get("/ui/datasets?lang=zh").text
    assert "<title>数据集 · llmos</title>" in chinese and "标签分布" in chinese


def test_the_annotation_page_is_in_the_nav_with_its_shortcuts_and_speaks_chinese(
    client: TestClient,
) -> None:
    english = client.get("/ui/annotation").text
    assert '<li data-scope="datasets" hidden><a href="/ui/annotation"' in english
    for text in (
        "u or Backspace undoes",
        "Cohen&#39;s kappa",
        'id="progress"',
        'src="/static/annotation.js"',
    ):
        assert text in english, text
    chinese = client.get("/ui/annotation?lang=zh").text
    assert "<title>标注 · llmos</title>" in chinese and "退格键撤销" in chinese


def test_the_tasks_page_is_in_the_nav_and_speaks_chinese(client: TestClient) -> None:
    english = client.get("/ui/tasks").text
    assert '<li data-scope="inference" hidden><a href="/ui/tasks"' in english
    assert 'src="/static/tasks.js"' in english and 'id="task-fields"' in english
    assert "<title>任务 · llmos</title>" in client.get("/ui/tasks?lang=zh").text


def test_the_batches_page_is_in_the_nav_with_its_upload_form_and_speaks_chinese(
    client: TestClient,
) -> None:
    english = client.get("/ui/batches").text
    assert '<li data-scope="inference" hidden><a href="/ui/batches"' in english
    for text in ('type="file"', 'id="batch-endpoint"', 'id="batch-cli"', "Download output", "batches.js"):
        assert text in english, text
    assert "<title>批处理 · llmos</title>" in client.get("/ui/batches?lang=zh").text


def test_the_training_page_is_in_the_nav_with_its_charts_and_speaks_chinese(client: TestClient) -> None:
    english = client.get("/ui/training").text
    assert '<li data-scope="training" hidden><a href="/ui/training"' in english
    for text in ('id="loss-chart"', 'id="lr-chart"', 'id="compare"', 'id="train-cli"', "uPlot.iife.min.js"):
        assert text in english, text
    assert "<title>训练 · llmos</title>" in client.get("/ui/training?lang=zh").text


def test_the_evaluations_page_is_in_the_nav_with_its_comparison_and_speaks_chinese(
    client: TestClient,
) -> None:
    english = client.get("/ui/evaluations").text
    assert '<li data-scope="eval" hidden><a href="/ui/evaluations"' in english
    for text in ('id="eval-a"', 'id="eval-b"', 'id="compare-rows"', "Δ (B − A)", "evaluations.js"):
        assert text in english, text
    assert "<title>评测 · llmos</title>" in client.get("/ui/evaluations?lang=zh").text


def test_the_explain_page_is_in_the_nav_offers_every_method_the_api_has_and_speaks_chinese(
    client: TestClient,
) -> None:
    english = client.get("/ui/explain").text
    assert '<li data-scope="eval" hidden><a href="/ui/explain"' in english
    options = re.findall(r'<option value="([a-z-]+)">([^<]+)</option>', english)
    assert [value for value, _ in options] == list(METHODS)
    # every method's label comes from the catalogue (a missing key would show as "method_...")
    labels = [catalogue("en")["method_" + m.replace("-", "_")] for m in METHODS]
    assert [label for _, label in options] == labels
    for text in ('id="explain-tokens"', 'id="explain-grid"', 'id="explain-error"', "explain.js"):
        assert text in english, text
    chinese = client.get("/ui/explain?lang=zh").text
    assert "<title>可解释性 · llmos</title>" in chinese and "积分梯度" in chinese
