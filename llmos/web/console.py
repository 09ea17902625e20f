"""The web console's routes: server-rendered Jinja pages at ``/`` and ``/ui/<page>``, the vendored
static assets at ``/static``, and FastAPI's ``/docs`` with local assets instead of a CDN.

The pages hold no data: their scripts call the same HTTP API as every client, with the key the
user typed (kept in ``sessionStorage``). So the pages are public; the server refuses what a key may
not do. Every page is sent with a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from llmos import __version__
from llmos.explain.explanation import METHODS as EXPLAIN_METHODS

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Page:
    name: str  # the template (``<name>.html``) and the catalogue key of its title
    path: str
    scope: str  # the scope its data needs: the nav hides it from keys without it
    scripts: tuple[str, ...] = ()  # static files beside console.js


PAGES = (
    Page("home", "/", "any", ("vendor/uPlot.iife.min.js", "charts.js", "home.js")),
    Page("models", "/ui/models", "models:read", ("models.js",)),
    Page("playground", "/ui/playground", "inference", ("playground.js",)),
    Page("tasks", "/ui/tasks", "inference", ("tasks.js",)),
    Page("batches", "/ui/batches", "inference", ("batches.js",)),
    Page("datasets", "/ui/datasets", "datasets", ("datasets.js",)),
    Page("annotation", "/ui/annotation", "datasets", ("annotation.js",)),
    Page("training", "/ui/training", "training", ("vendor/uPlot.iife.min.js", "training.js")),
    Page("evaluations", "/ui/evaluations", "eval", ("evaluations.js",)),
    Page("explain", "/ui/explain", "eval", ("explain.js",)),  # POST /api/explain needs eval
    Page("metrics", "/ui/metrics", "metrics", ("vendor/uPlot.iife.min.js", "charts.js", "metrics.js")),
    Page("keys", "/ui/keys", "admin", ("keys.js",)),
)
LANGUAGES = ("en", "zh")


@cache
def catalogue(language: str) -> dict[str, str]:
    """The console's strings in ``language``, English for any it does not translate."""
    english = json.loads((HERE / "i18n" / "en.json").read_text(encoding="utf-8"))
    if language == "en":
        return english
    return {**english, **json.loads((HERE / "i18n" / f"{language}.json").read_text(encoding="utf-8"))}


def _language(request: Request) -> str:
    wanted = request.query_params.get("lang") or request.headers.get("accept-language", "")
    return "zh" if wanted.lower().startswith("zh") else "en"


def _templates() -> Jinja2Templates:
    # Sandboxed and autoescaped: a template can only format what it is given.
    env = SandboxedEnvironment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    return Jinja2Templates(env=env)


class StaticAssets(StaticFiles):
    """``StaticFiles`` that sends ``nosniff`` (and no referrer) with every asset."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def static_app() -> StaticAssets:
    return StaticAssets(directory=STATIC_DIR)


def console_router(route_kwargs: dict[str, Any]) -> APIRouter:
    """The pages and ``/docs``; ``route_kwargs`` is the server's public-scope declaration."""
    router = APIRouter(include_in_schema=False)
    templates = _templates()

    def render(request: Request, page: Page) -> HTMLResponse:
        language = _language(request)
        strings = catalogue(language)
        context = {
            "page": page,
            "pages": PAGES,
            "version": __version__,
            "language": language,
            "t": lambda key: strings.get(key, key),
            "strings": json.dumps(strings, ensure_ascii=False),
            "explain_methods": EXPLAIN_METHODS,  # the method picker offers what the API accepts
        }
        return templates.TemplateResponse(request, f"{page.name}.html", context, headers=SECURITY_HEADERS)

    def view(page: Page) -> Any:
        async def show(request: Request) -> HTMLResponse:
            return render(request, page)

        return show

    for page in PAGES:
        router.add_api_route(
            page.path, view(page), methods=["GET"], name=f"console_{page.name}", **route_kwargs
        )

    @router.get("/docs", **route_kwargs)
    async def docs() -> HTMLResponse:
        """Swagger UI from the vendored files; its start-up code is a static file (no inline script)."""
        html = (HERE / "templates" / "docs.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    return router
