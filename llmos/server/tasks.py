"""POST /v1/tasks/{task}: the NLP task helpers (translate, summarize, qa, classify, sentiment, ner,
pos, tokenize, code) over HTTP, one route per task so ``/openapi.json`` carries each task's input.

A request holds a lease on the model like a chat request (same admission, same limits) and runs
``llmos.tasks.run_task`` off the event loop; the engine batches the items of one request together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, create_model

from llmos.errors import InvalidRequest
from llmos.monitor.requests import current_request
from llmos.runtime.model_runtime import ModelRuntime
from llmos.server.auth import check_model, requires
from llmos.tasks import TASKS, TaskSpec, run_task
from llmos.tasks.spec import main_field

MAX_ITEMS = 256

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


class TaskOptions(BaseModel):
    """What every task request carries beside its input."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int | None = None
    max_tokens: int | None = Field(None, ge=1, le=32768)
    shard: bool = Field(True, description="split inputs longer than the context on sentence boundaries")


class TaskItemResult(BaseModel):
    output: dict[str, Any]
    diagnostics: dict[str, Any]
    usage: dict[str, int]


class TaskResponse(BaseModel):
    """One result per input item, in order, with the spec version that produced them."""

    object: str = "task.result"
    task: str
    version: str
    model: str
    results: list[TaskItemResult]
    usage: dict[str, int]


class TaskInfo(BaseModel):
    name: str
    version: str
    main_field: str = Field(description="the input field that holds the main text (a dataset column's)")
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


def _request_model(spec: TaskSpec) -> type[TaskOptions]:
    """``{model, input: ITEM | [ITEM, ...], temperature, seed, max_tokens, shard}`` for ``spec``."""
    camel = "".join(part.capitalize() for part in spec.name.split("_"))
    item: Any = spec.input_model
    one_or_many: Any = item | list[item]
    model: type[TaskOptions] = create_model(
        f"{camel}TaskRequest",
        __base__=TaskOptions,
        input=(one_or_many, Field(description=f"one {spec.name} input, or up to {MAX_ITEMS}")),
    )
    return model


def _items(body: Any) -> list[dict[str, Any]]:
    raw = body.input if isinstance(body.input, list) else [body.input]
    if not raw:
        raise InvalidRequest("input is an empty list; send one item or a list of items.", param="input")
    if len(raw) > MAX_ITEMS:
        raise InvalidRequest(f"input has {len(raw)} items; at most {MAX_ITEMS} per request.", param="input")
    return [item.model_dump(exclude_unset=True) for item in raw]


async def run(spec: TaskSpec, body: Any, request: Request) -> TaskResponse:
    check_model(request, body.model)
    items = _items(body)
    pool = request.app.state.pool
    record = current_request()
    async with pool.lease(body.model, len(items)) as lease:
        runtime: ModelRuntime = lease.runtime  # type: ignore[assignment]
        if record is not None:
            record.operation, record.model, record.temperature = "task", body.model, body.temperature
        _admit(request, runtime, body, items)
        task_run = await asyncio.to_thread(
            run_task,
            spec.name,
            runtime,
            items,
            temperature=body.temperature,
            seed=body.seed,
            max_tokens=body.max_tokens,
            shard=body.shard,
        )
    data = task_run.to_dict()
    used = data["usage"]
    metrics = request.app.state.metrics
    metrics.prompt_tokens.labels(runtime.name).inc(used.get("prompt_tokens", 0))
    metrics.generation_tokens.labels(runtime.name).inc(used.get("completion_tokens", 0))
    if record is not None:
        record.add_generation(
            prompt_tokens=used.get("prompt_tokens", 0),
            completion_tokens=used.get("completion_tokens", 0),
            finish_reason="stop",
        )
    return TaskResponse(
        task=spec.name,
        version=spec.version,
        model=runtime.name,
        results=[TaskItemResult(**r) for r in data["results"]],
        usage=data["usage"],
    )


def _admit(request: Request, runtime: ModelRuntime, body: Any, items: list[dict[str, Any]]) -> None:
    """Reserve a task request's worst case before it runs: every text field of its items (a task's
    prompt wraps them in a short template, hence the slack) and ``max_tokens`` (else a quarter of
    the context) per item — a task may ask again or shard, so it is an estimate, settled after."""
    access = getattr(request.app.state, "access", None)
    if access is None:
        return
    texts = [v for item in items for v in item.values() if isinstance(v, str)]
    prompt = sum(len(runtime.tokenizer.encode(t)) for t in texts) + 256 * len(items)
    completion = (body.max_tokens or max(1, runtime.max_model_len // 4)) * len(items)
    access.admit(body.model, prompt, completion)


def _route(spec: TaskSpec) -> None:
    request_model = _request_model(spec)

    async def endpoint(body: Any, request: Request) -> TaskResponse:
        return await run(spec, body, request)

    # real classes, not the strings postponed annotations make, so FastAPI validates the body
    endpoint.__annotations__ = {"body": request_model, "request": Request, "return": TaskResponse}

    endpoint.__name__ = f"task_{spec.name}"
    endpoint.__doc__ = (
        getattr(spec, "description", "") or f"The {spec.name} task."
    ) + f" (spec version {spec.version})"
    router.add_api_route(
        f"/{spec.name}", endpoint, methods=["POST"], response_model=TaskResponse, **requires("inference")
    )


@router.get("", response_model=list[TaskInfo], **requires("inference"))
async def list_tasks() -> list[TaskInfo]:
    """Every task with its spec version and the JSON schemas of one item's input and output."""
    return [
        TaskInfo(
            name=s.name,
            version=s.version,
            main_field=main_field(s.name),
            input_schema=s.input_model.model_json_schema(),
            output_schema=s.output_schema,
        )
        for s in TASKS.values()
    ]


for _spec in TASKS.values():
    _route(_spec)


@router.post("/{task}", include_in_schema=False, **requires("inference"))
async def unknown_task(task: str) -> None:
    raise InvalidRequest(f"Unknown task {task!r}; known tasks: {', '.join(TASKS)}.", param="task")
