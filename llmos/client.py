"""The remote SDK: ``llmos.connect(url)`` drives a running ``llmos serve`` over HTTP.

``RemoteModel`` has the methods of the in-process ``llmos.Model`` and speaks the OpenAI-compatible
routes, so code moves between ``llmos.load_model(name)`` and ``llmos.connect(url).model(name)``;
``Client`` adds the native model-management API (``/api/...``). Server errors come back as
``llmos.errors`` classes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from llmos.errors import AlreadyExists, InvalidRequest, LLMOSError, ModelNotFound
from llmos.tasks.methods import TaskMethods

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion

Messages = list[dict[str, Any]] | str

DEFAULTS: dict[str, Any] = {"max_tokens": 256, "temperature": 0.7}  # == llmos.sdk.DEFAULTS
MODEL_DEFAULT_FIELDS = frozenset(("temperature", "top_p", "top_k", "min_p", "repetition_penalty"))
MAX_PROMPTS = 64  # prompts per /v1/completions request: the server's limit (llmos.server.protocol)
# ``SamplingParams``' fields, which are also the request fields of the same names (the engine is
# not imported: it pulls in torch, which a client of a remote server does not need).
SAMPLING_FIELDS = frozenset(
    "max_tokens temperature top_p top_k min_p repetition_penalty presence_penalty frequency_penalty "
    "seed stop stop_token_ids ignore_eos min_tokens logprobs include_stop_str_in_output "
    "skip_special_tokens prompt_logprobs structured_output".split()
)
STRUCTURED_FIELDS = ("json", "json_object", "regex", "choice", "grammar")  # vLLM: guided_<field>


class RemoteError(LLMOSError):
    """An error answer that names no ``llmos.errors`` class (a bare 401, 5xx…), or no answer at all."""

    def __init__(
        self, message: str, *, status_code: int, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.code = code


class ServerUnreachable(RemoteError):
    """Nothing answered at the client's URL."""


def error_from_envelope(
    error: dict[str, Any], status: int | None = None, retry_after: str | None = None
) -> LLMOSError:
    """The ``llmos.errors`` exception for an OpenAI error envelope's ``error`` object.

    The server's own ``code`` picks the class it raised (when ``status`` agrees); otherwise 404,
    400/422 and 409 pick ``ModelNotFound``, ``InvalidRequest`` and ``AlreadyExists``, and anything
    else is a ``RemoteError``. Errors inside a stream have no status: the code alone decides.
    """
    message = str(error.get("message") or f"HTTP {status}")
    param, code = error.get("param"), error.get("code")
    if retry_after:
        message += f" (retry after {retry_after} s)"
    cls = _classes_by_code().get(code) if isinstance(code, str) else None
    if cls is None or status not in (None, cls.status_code):
        cls = _BY_STATUS.get(status or 500)
    if cls is None:
        return RemoteError(
            f"server answered {status or 500}: {message}", status_code=status or 500, code=code, param=param
        )
    exc = cls(message, param=param)
    if retry_after and retry_after.isdigit() and hasattr(exc, "retry_after"):
        exc.retry_after = int(retry_after)
    return exc


_BY_STATUS: dict[int, type[LLMOSError]] = {
    400: InvalidRequest,
    404: ModelNotFound,
    409: AlreadyExists,
    422: InvalidRequest,
}


def _classes_by_code() -> dict[str, type[LLMOSError]]:
    """Every class of ``llmos.errors`` that sets its own ``code``, by that code."""
    found: dict[str, type[LLMOSError]] = {}
    todo: list[type[LLMOSError]] = [LLMOSError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__ == "llmos.errors" and vars(cls).get("code"):
            found[str(cls.code)] = cls
    return found


def _error_from_response(response: httpx.Response) -> LLMOSError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    route = f"{response.request.method} {response.request.url.path}"
    if not isinstance(error, dict):
        error = {"message": f"{route}: {response.text.strip()[:300] or response.reason_phrase}"}
    if response.status_code == 404 and error.get("code") is None and error.get("message") == "Not Found":
        # FastAPI's answer for a route it does not have, not for a model: say which route.
        message = f"{route}: the server at {response.url.host}:{response.url.port} has no such route."
        return RemoteError(message, status_code=404, code="route_not_found")
    return error_from_envelope(error, response.status_code, response.headers.get("Retry-After"))


def request_fields(
    sampling: dict[str, Any], chat: bool = False, model_defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Request body fields for ``llmos.Model`` sampling keywords, with the in-process SDK's order of
    precedence: the caller's keywords (None counts as unset), then the model's recommended values,
    then ``DEFAULTS``.

    Raises InvalidRequest for a keyword that is not a sampling option.
    """
    unknown = sorted(set(sampling) - SAMPLING_FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown sampling option {unknown[0]!r}.", param=unknown[0])
    given = {k: v for k, v in sampling.items() if not (v is None and k in MODEL_DEFAULT_FIELDS)}
    body = {**DEFAULTS, **(model_defaults or {}), **given}
    structured = body.pop("structured_output", None)
    if chat and body.get("logprobs") is not None:
        body["top_logprobs"] = body["logprobs"]
        body["logprobs"] = True
    return body | (structured_fields(structured) if structured is not None else {})


def structured_fields(spec: Any) -> dict[str, Any]:
    """``structured_output`` (``{"json": schema}``, ``{"regex": r}``, ``{"choice": [...]}``,
    ``{"grammar": g}``, ``{"json_object": True}`` or a ``StructuredOutput``) as request body fields."""
    given: dict[str, Any] = (
        spec if isinstance(spec, dict) else {k: getattr(spec, k, None) for k in STRUCTURED_FIELDS}
    )
    given = {k: v for k, v in given.items() if v not in (None, False)}
    if len(given) != 1 or not set(given) <= set(STRUCTURED_FIELDS):
        raise InvalidRequest(
            f"structured_output={spec!r} is invalid: give exactly one of {', '.join(STRUCTURED_FIELDS)}.",
            param="structured_output",
        )
    ((kind, value),) = given.items()
    if kind == "json":
        schema = {"name": "output", "schema": value}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {f"guided_{kind}": list(value) if kind == "choice" else value}


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON events of a server-sent event stream, up to ``data: [DONE]``; raises on an error event."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise error_from_envelope(event["error"])
        yield event


class Client:
    """A connection to one llmos server. ``api_key`` is sent as ``Authorization: Bearer KEY``."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 600.0) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"<llmos.Client {self.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def model(self, name: str) -> RemoteModel:
        """A handle on the server's model ``name``; the server loads it on first use if needed."""
        return RemoteModel(self, name)

    load_model = model

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; returns the JSON answer. Raises the ``llmos.errors`` class of an error."""
        with self._transport_errors():
            response = self.http.request(method, path, json=body)
        if response.is_error:
            raise _error_from_response(response)
        return response.json()

    def lines(self, method: str, path: str, body: dict[str, Any] | None = None) -> Iterator[str]:
        """The lines of a streamed answer as they arrive (SSE or NDJSON)."""
        with self._transport_errors(), self.http.stream(method, path, json=body) as response:
            if response.is_error:
                response.read()
                raise _error_from_response(response)
            yield from response.iter_lines()

    def _transport_errors(self) -> AbstractContextManager[None]:
        return _transport_errors(self.url, self.http.timeout.read)

    # --- the native API: the server's model store and loaded models ---------------------------

    def models(self) -> list[dict[str, Any]]:
        """The server's stored models: name, version, ref, kind, size_bytes, digest, aliases, loaded…"""
        return list(self.request("GET", "/api/models")["models"])

    def show(self, name: str) -> dict[str, Any]:
        """One stored model as the server describes it: ref, kind, aliases, loaded, manifest…
        Raises ModelNotFound."""
        return dict(self.request("GET", f"/api/models/{name}"))

    def ps(self) -> list[dict[str, Any]]:
        """The models loaded on the server now."""
        return list(self.request("GET", "/api/ps")["models"])

    def catalog(self) -> list[dict[str, Any]]:
        """The models the server can pull by name, each with the versions of it already in its store."""
        return list(self.request("GET", "/api/catalog")["models"])

    def pull(self, name: str, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Have the server pull ``name``; ``progress`` gets each status line. Returns the last line."""
        last: dict[str, Any] = {}
        for line in self.lines("POST", "/api/pull", {"name": name}):
            if not line.strip():
                continue
            last = json.loads(line)
            if progress is not None:
                progress(last)
            if last.get("status") == "error":
                raise error_from_envelope(last.get("error") or {"message": f"pulling {name} failed"})
        return last

    def load(self, name: str, keep_alive: float | None = None, pin: bool | None = None) -> dict[str, Any]:
        """Load ``name`` on the server now; ``keep_alive`` idle seconds (negative: forever); ``pin``
        True pins it (never evicted nor expired), False unpins it, None leaves it as it is."""
        body: dict[str, Any] = {}
        if pin is not None:
            body["pin"] = pin
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return dict(self.request("POST", f"/api/models/{name}/load", body))

    def unload(self, name: str) -> dict[str, Any]:
        """Unload ``name`` from the server's memory (it stays in the store). Raises ModelNotFound."""
        return dict(self.request("POST", f"/api/models/{name}/unload"))

    def delete(self, name: str) -> dict[str, Any]:
        """Delete ``name`` (every version, or ``name:v``) from the server's store; returns ``deleted``."""
        return dict(self.request("DELETE", f"/api/models/{name}"))

    # --- batch jobs (the OpenAI Files and Batch APIs) ------------------------------------------

    def upload_file(self, data: bytes, filename: str, purpose: str = "batch") -> dict[str, Any]:
        """Store ``data`` on the server (``POST /v1/files``); returns OpenAI's file object."""
        with self._transport_errors():
            response = self.http.post(
                "/v1/files", files={"file": (filename, data, "application/jsonl")}, data={"purpose": purpose}
            )
        if response.is_error:
            raise _error_from_response(response)
        return dict(response.json())

    def file_content(self, file_id: str) -> Iterator[bytes]:
        """A stored file's bytes, in chunks as they arrive."""
        with self._transport_errors(), self.http.stream("GET", f"/v1/files/{file_id}/content") as response:
            if response.is_error:
                response.read()
                raise _error_from_response(response)
            yield from response.iter_bytes()

    def create_batch(
        self, input_file_id: str, endpoint: str, metadata: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Start a batch over an uploaded input file (completion window 24h)."""
        body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h"}
        return dict(self.request("POST", "/v1/batches", body | ({"metadata": metadata} if metadata else {})))

    def batches(self, limit: int = 100) -> list[dict[str, Any]]:
        """This key's batches (every key's with the admin scope), newest first."""
        return list(self.request("GET", f"/v1/batches?limit={limit}")["data"])

    def batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/batches/{batch_id}"))

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/batches/{batch_id}/cancel"))


@contextmanager
def _transport_errors(url: str, timeout: float | None) -> Iterator[None]:
    """Turns httpx's connection and timeout errors into ``RemoteError``s that name the server."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise ServerUnreachable(
            f"Cannot connect to an llmos server at {url} ({exc}). "
            "Start one with `llmos serve`, or check the URL.",
            status_code=503,
            code="server_unreachable",
        ) from exc
    except httpx.TimeoutException as exc:
        raise RemoteError(
            f"No answer from {url} within {timeout} s; pass a larger timeout to llmos.connect().",
            status_code=504,
            code="timeout",
        ) from exc
    except httpx.TransportError as exc:
        raise RemoteError(f"Connection to {url} failed: {exc}", status_code=502) from exc


class RemoteModel(TaskMethods):
    """A model served by an llmos server, with the methods of ``llmos.Model`` (task helpers too)."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"<llmos.RemoteModel {self.name} at {self.client.url}>"

    def __enter__(self) -> RemoteModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to free here: the server keeps the model (``Client.unload`` unloads it)."""

    def tokenize(self, text: str) -> list[int]:
        return list(self.client.request("POST", "/tokenize", {"model": self.name, "prompt": text})["tokens"])

    def detokenize(self, token_ids: list[int]) -> str:
        body = {"model": self.name, "tokens": list(token_ids)}
        return str(self.client.request("POST", "/detokenize", body)["prompt"])

    def complete(self, prompt: str | list[int], **sampling: Any) -> Completion:
        """Generate a continuation of ``prompt``; returns text, finish reason and usage.

        ``token_ids`` and ``logprobs`` stay empty: the OpenAI answer carries neither as ids.
        """
        from llmos.engine.outputs import Completion

        answer = self._post("/v1/completions", {"prompt": prompt}, sampling)
        choice, counts = answer["choices"][0], answer.get("usage") or {}
        cached = (counts.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return Completion(
            request_id=answer.get("id", ""),
            text=choice["text"],
            token_ids=list(choice.get("token_ids") or []),
            logprobs=None,
            finish_reason=choice.get("finish_reason"),
            stop_reason=choice.get("stop_reason"),
            num_prompt_tokens=counts.get("prompt_tokens", 0),
            num_output_tokens=counts.get("completion_tokens", 0),
            num_cached_tokens=cached,
        )

    def generate_text(self, prompt: str, **sampling: Any) -> str:
        return self.complete(prompt, **sampling).text

    def chat(self, messages: Messages, **sampling: Any) -> str:
        """Answer a conversation (list of {role, content}) or a single user message."""
        answer = self._post("/v1/chat/completions", {"messages": _messages(messages)}, sampling, chat=True)
        return str(answer["choices"][0]["message"]["content"] or "")

    def stream(self, prompt: str, **sampling: Any) -> Iterator[str]:
        for event in self._stream("/v1/completions", {"prompt": prompt}, sampling):
            yield from (c["text"] for c in event["choices"] if c.get("text"))

    def stream_chat(self, messages: Messages, **sampling: Any) -> Iterator[str]:
        body = {"messages": _messages(messages)}
        for event in self._stream("/v1/chat/completions", body, sampling, chat=True):
            yield from (c["delta"]["content"] for c in event["choices"] if c.get("delta", {}).get("content"))

    def generate_batch(self, prompts: list[str], **sampling: Any) -> list[str]:
        """Run many prompts in one request per 64 (the server batches them); texts in order."""
        texts: list[str] = []
        for start in range(0, len(prompts), MAX_PROMPTS):
            answer = self._post("/v1/completions", {"prompt": prompts[start : start + MAX_PROMPTS]}, sampling)
            texts += [c["text"] for c in sorted(answer["choices"], key=lambda c: c["index"])]
        return texts

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        """One embedding vector per text (a single string gives a list of one)."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        answer = self.client.request("POST", "/v1/embeddings", {"model": self.name, "input": inputs})
        return [list(d["embedding"]) for d in sorted(answer["data"], key=lambda d: d["index"])]

    def run_task(self, task: str, items: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """``POST /v1/tasks/{task}`` on ``items``: the server's answer (results in order, usage)."""
        given = {k: v for k, v in options.items() if v is not None}
        return dict(
            self.client.request("POST", f"/v1/tasks/{task}", {"model": self.name, "input": items, **given})
        )

    def _task(self, task: str, item: dict[str, Any], **options: Any) -> dict[str, Any]:
        return dict(self.run_task(task, [item], **options)["results"][0]["output"])

    @functools.cached_property
    def sampling_defaults(self) -> dict[str, Any]:
        """The model's recommended sampling values from the server's manifest (an adapter uses its
        base's); empty when it names none or the server does not know the model (the request
        itself then says so)."""
        try:
            shown = self.client.show(self.name.partition("+")[0])
        except LLMOSError:
            return {}
        manifest = shown.get("manifest") if isinstance(shown, dict) else None
        return dict((manifest or {}).get("defaults") or {})

    def _post(self, path: str, body: dict[str, Any], sampling: dict[str, Any], chat: bool = False) -> Any:
        fields = request_fields(sampling, chat, self.sampling_defaults)
        return self.client.request("POST", path, {"model": self.name, **body, **fields})

    def _stream(
        self, path: str, body: dict[str, Any], sampling: dict[str, Any], chat: bool = False
    ) -> Iterator[dict[str, Any]]:
        fields = request_fields(sampling, chat, self.sampling_defaults)
        full = {"model": self.name, **body, **fields, "stream": True}
        yield from sse_events(self.client.lines("POST", path, full))


def _messages(messages: Messages) -> list[dict[str, Any]]:
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)


def connect(url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 600.0) -> Client:
    """A client for the llmos server at ``url``; ``client.model(name)`` gives a ``RemoteModel``.

    Nothing is sent until the first call; an unreachable server raises ``ServerUnreachable`` then.
    """
    return Client(url, api_key=api_key, timeout=timeout)
