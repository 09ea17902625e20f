"""Run a task over a batch of items on a loaded model.

Every item's plan (a generator, see ``spec.py``) is advanced in lockstep: each round gathers the
generations all plans ask for — every item, every shard, every re-ask — and sends them to the engine
in one ``generate_batch`` call, so they decode together. Inputs are validated before anything runs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llmos.engine.sampling_params import SamplingParams
from llmos.errors import GenerationFailed, InvalidRequest
from llmos.tasks.catalog import TASKS
from llmos.tasks.context import ItemContext
from llmos.tasks.spec import Diagnostics, Generation, Plan, TaskResult, TaskRun, TaskSpec, Usage

if TYPE_CHECKING:
    from llmos.engine.outputs import Completion
    from llmos.runtime.model_runtime import ModelRuntime


def get_spec(task: str) -> TaskSpec:
    """The spec named ``task``; raises InvalidRequest listing the known tasks."""
    if task not in TASKS:
        raise InvalidRequest(f"Unknown task {task!r}; known tasks: {', '.join(TASKS)}.", param="task")
    return TASKS[task]


def validate_item(spec: TaskSpec, item: Any, index: int) -> Any:
    """``item`` as ``spec.input_model``; raises InvalidRequest naming the first bad field."""
    if isinstance(item, spec.input_model):
        return item
    try:
        return spec.input_model.model_validate(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "item"
        raise InvalidRequest(
            f"{spec.name} input {index}: {where}: {error['msg']}.",
            param=str(error["loc"][0] if error["loc"] else "input"),
        ) from exc


def run_task(
    task: str,
    runtime: ModelRuntime,
    items: list[dict[str, Any]],
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    max_tokens: int | None = None,
    shard: bool = True,
) -> TaskRun:
    """Run ``task`` on each item; one ``TaskResult`` per item, in order.

    ``max_tokens`` caps every generation (a cap below what a constrained output needs cuts it off
    and shows as ``parse_failed``). Raises InvalidRequest for an unknown task or a bad item (before
    any generation), GenerationFailed when the engine fails a request.
    """
    spec = get_spec(task)
    if not items:
        raise InvalidRequest("items is empty: give at least one input.", param="input")
    inputs = [validate_item(spec, item, i) for i, item in enumerate(items)]
    contexts = [
        ItemContext(spec.name, runtime.tokenizer, runtime.max_model_len, shard, Diagnostics()) for _ in inputs
    ]
    plans = [spec.plan(ctx, value) for ctx, value in zip(contexts, inputs)]
    usages = [Usage() for _ in plans]
    outputs: list[dict[str, Any] | None] = [None] * len(plans)
    started = time.perf_counter()
    first = {i: _advance(plans[i], None, outputs, i) for i in range(len(plans))}  # validates every item
    pending = {i: asked for i, asked in first.items() if asked is not None}
    for ctx in contexts:
        ctx.diagnostics.latency_ms = (time.perf_counter() - started) * 1000
    while pending:
        batch = [(i, g) for i, asked in pending.items() for g in asked]
        completions = _generate(runtime, [g for _, g in batch], temperature, seed, max_tokens)
        replies: dict[int, list[Completion]] = {i: [] for i in pending}
        for (i, _), completion in zip(batch, completions):
            replies[i].append(completion)
            usages[i].add(Usage(completion.num_prompt_tokens, completion.num_output_tokens))
        advanced = {i: _advance(plans[i], replies[i], outputs, i) for i in pending}
        pending = {i: asked for i, asked in advanced.items() if asked is not None}
        for i in advanced:
            contexts[i].diagnostics.latency_ms = (time.perf_counter() - started) * 1000
    results = [
        TaskResult(out or {}, ctx.diagnostics.to_dict(), usage)
        for out, ctx, usage in zip(outputs, contexts, usages)
    ]
    total = Usage()
    for usage in usages:
        total.add(usage)
    return TaskRun(spec.name, spec.version, results, total)


def _advance(
    plan: Plan, reply: list[Completion] | None, outputs: list[dict[str, Any] | None], index: int
) -> list[Generation] | None:
    """Send ``reply`` into ``plan``; what it asks for next, or None once it returned its output."""
    try:
        asked = plan.send(reply)  # type: ignore[arg-type]  # None starts the generator
        while not asked:  # a plan that asks for nothing this round gets its empty reply at once
            asked = plan.send([])
        return asked
    except StopIteration as stop:
        outputs[index] = stop.value
        return None


def _generate(
    runtime: ModelRuntime,
    generations: list[Generation],
    temperature: float,
    seed: int | None,
    max_tokens: int | None,
) -> list[Completion]:
    tokenizer, limit = runtime.tokenizer, runtime.max_model_len
    prompts = [tokenizer.encode_chat(g.messages) for g in generations]
    params = [
        SamplingParams(
            max_tokens=max(1, min(g.max_tokens, max_tokens or g.max_tokens, limit - len(ids))),
            temperature=temperature,
            seed=seed,
            structured_output=g.structured_output,  # type: ignore[arg-type]  # a dict, converted
            logprobs=g.logprobs,
        )
        for g, ids in zip(generations, prompts)
    ]
    completions = runtime.engine.generate_batch(prompts, params)
    for completion in completions:
        if completion.finish_reason == "error":
            raise GenerationFailed.because(completion.error)
    return completions
