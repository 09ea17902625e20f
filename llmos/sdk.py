"""The in-process Python SDK: ``llmos.load_model(...)`` and the seed-style ``llmos.LLM``.

A ``Model`` drives the same engine the server uses. Sampling keywords are the engine's
``SamplingParams`` fields (``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``…),
``structured_output`` included: ``model.generate_text(prompt, structured_output={"json": schema})``
returns text that parses as JSON and matches ``schema`` (also ``regex``, ``choice``, ``grammar``).
A keyword left out takes the model's recommended value (``Model.sampling_defaults``, e.g. SmolLM2's
temperature 0.2), then the SDK's ``DEFAULTS``; ``temperature=0`` is always greedy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llmos.config import Settings
from llmos.engine.outputs import Completion
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import EngineDead, GenerationFailed, InvalidRequest
from llmos.runtime.embeddings import EmbeddingRuntime
from llmos.runtime.model_runtime import ModelRuntime, load_any_runtime
from llmos.tasks.methods import TaskMethods

Messages = list[dict[str, Any]] | str

DEFAULTS: dict[str, Any] = {"max_tokens": 256, "temperature": 0.7}
# the keys a model recommends; None means "unset" for them (``max_tokens=None`` means "no limit")
_UNSET_WHEN_NONE = frozenset(("temperature", "top_p", "top_k", "min_p", "repetition_penalty"))


def _params(overrides: dict[str, Any], model_defaults: Mapping[str, Any] | None = None) -> SamplingParams:
    """``SamplingParams`` from the caller's keywords over the model's defaults over ``DEFAULTS``; a
    keyword given as None (``temperature=None``) counts as left out, as it does on the wire.
    Raises ``InvalidRequest`` for an unknown keyword or a bad value."""
    given = {k: v for k, v in overrides.items() if not (v is None and k in _UNSET_WHEN_NONE)}
    values = {**DEFAULTS, **(model_defaults or {}), **given}
    try:
        return SamplingParams(**values)
    except TypeError as exc:
        raise InvalidRequest(f"Unknown sampling option: {exc}") from exc


def _messages(messages: Messages) -> list[dict[str, Any]]:
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)


class Model(TaskMethods):
    """A loaded model. Methods block until done; ``stream`` yields text as it is generated. The NLP
    task helpers (``translate``, ``summarize``, ``answer``, ``classify``, ``sentiment``, ``entities``,
    ``pos``, ``tokens``, ``code``) come from ``llmos.tasks.methods.TaskMethods``."""

    def __init__(self, runtime: ModelRuntime):
        self.runtime = runtime

    @property
    def name(self) -> str:
        return self.runtime.name

    def __repr__(self) -> str:
        return f"<llmos.Model {self.name}>"

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        """The sampling values the model's authors recommend (``temperature``, ``top_p``…), which
        a call that leaves them out gets; empty when the model names none."""
        return self.runtime.sampling_defaults.to_dict()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.runtime.close()

    def tokenize(self, text: str) -> list[int]:
        return self.runtime.tokenizer.encode(text)

    def detokenize(self, token_ids: list[int]) -> str:
        return self.runtime.tokenizer.decode(token_ids)

    def complete(self, prompt: str | list[int], **sampling: Any) -> Completion:
        """Generate a continuation of ``prompt``; returns text, tokens, finish reason and usage."""
        return self._run([self._encode(prompt)], self._params(sampling))[0]

    def generate_text(self, prompt: str, **sampling: Any) -> str:
        return self.complete(prompt, **sampling).text

    def chat(self, messages: Messages, **sampling: Any) -> str:
        """Answer a conversation (list of {role, content}) or a single user message."""
        prompt_ids = self.runtime.tokenizer.encode_chat(_messages(messages))
        return self._run([prompt_ids], self._params(sampling))[0].text

    def stream(self, prompt: str, **sampling: Any) -> Iterator[str]:
        yield from self._stream(self._encode(prompt), self._params(sampling))

    def stream_chat(self, messages: Messages, **sampling: Any) -> Iterator[str]:
        prompt_ids = self.runtime.tokenizer.encode_chat(_messages(messages))
        yield from self._stream(prompt_ids, self._params(sampling))

    def generate_batch(self, prompts: list[str], **sampling: Any) -> list[str]:
        """Run many prompts together through the engine (continuous batching); texts in order."""
        params = self._params(sampling)
        return [c.text for c in self._run([self._encode(p) for p in prompts], params)]

    def _params(self, sampling: dict[str, Any]) -> SamplingParams:
        return _params(sampling, self.sampling_defaults)

    def _encode(self, prompt: str | list[int]) -> list[int]:
        return list(prompt) if isinstance(prompt, list) else self.runtime.tokenizer.encode(prompt)

    def _check_engine(self) -> None:
        """Raises EngineDead, saying how to recover, once the engine has stopped (a fault killed
        it, or the model was closed)."""
        engine = self.runtime.engine
        if engine.is_healthy:
            return
        error = getattr(engine, "error", None)
        why = f" after an internal error ({type(error).__name__}: {error})" if error else ""
        raise EngineDead(
            f"{self.name}'s engine has stopped{why}; load the model again: llmos.load_model({self.name!r})."
        )

    def _run(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        self._check_engine()
        results = self.runtime.engine.generate_batch(prompts, [params] * len(prompts))
        for result in results:
            if result.finish_reason == "error":
                raise GenerationFailed.because(result.error)
        return results

    def _stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[str]:
        self._check_engine()
        for out in self.runtime.engine.stream(prompt_ids, params):
            if out.finish_reason == "error":
                raise GenerationFailed.because(out.error)
            if out.text:
                yield out.text

    def run_task(self, task: str, items: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """Task ``task`` on a batch of input items (run together through the engine), as the HTTP
        route answers it: ``{"task", "version", "results": [{output, diagnostics, usage}], "usage"}``.
        ``options``: ``temperature`` (default 0), ``seed``, ``max_tokens``, ``shard``."""
        from llmos.tasks import run_task

        return {**run_task(task, self.runtime, items, **options).to_dict(), "model": self.name}

    def _task(self, task: str, item: dict[str, Any], **options: Any) -> dict[str, Any]:
        return dict(self.run_task(task, [item], **options)["results"][0]["output"])

    def explain(
        self, prompt: str, target: str | None = None, method: str = "integrated-gradients", **options: Any
    ) -> Any:
        """An ``llmos.explain.Explanation`` of ``prompt`` → ``target`` (default: greedy output).

        ``method``: integrated-gradients, saliency, input-x-gradient, ablation, attention,
        logit-lens; ``options``: ``steps``, ``layer``, ``head``, ``top_k``. The first call loads a
        transformers copy of the model (gradients and attention weights need it). Raises
        ``InvalidRequest`` for a bad method or option.
        """
        from llmos.explain import explain, load_explain_model

        if getattr(self, "_explain_model", None) is None:
            self._explain_model = load_explain_model(Path(self.runtime.path), self.name)
        return explain(self._explain_model, prompt, target, method, **options)


class EmbeddingModel:
    """A loaded embedding model (``llmos.load_model("all-minilm-l6-v2")``)."""

    def __init__(self, runtime: EmbeddingRuntime):
        self.runtime = runtime

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def dimensions(self) -> int:
        return self.runtime.dimensions

    def __repr__(self) -> str:
        return f"<llmos.EmbeddingModel {self.name}>"

    def __enter__(self) -> EmbeddingModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed(self, texts: str | list[str], *, normalize: bool = True) -> list[list[float]]:
        """One vector per text (unit length unless ``normalize=False``), in order."""
        return self.runtime.embed(
            [texts] if isinstance(texts, str) else list(texts), normalize=normalize
        ).vectors

    def close(self) -> None:
        self.runtime.close()


def load_model(ref: str | Path, *, adapter: str | None = None, **settings: Any) -> Any:
    """Load a model by name (``smollm2``), ``name:version``, or a Hugging Face folder path: a
    ``Model`` for generation, an ``EmbeddingModel`` (``embed``) for an embedding model.

    A LoRA adapter version is merged in at load time: ``load_model("smollm2+my-adapter")``, or
    ``load_model("smollm2", adapter="my-adapter")``, or the adapter alone (on the base it names).
    Keyword arguments override ``Settings`` fields (``device``, ``dtype``, ``max_model_len``,
    ``quantization="int8"`` for weight-only int8 projections on the CPU…).
    Raises ``llmos.errors.ModelNotFound`` (with the command to pull it), ``InvalidRequest`` for a
    bad setting (``quantization`` other than ``none``/``int8``) and friends.
    """
    if adapter is not None:
        ref = f"{ref}+{adapter}"
    runtime = load_any_runtime(ref, Settings.from_env(**settings))
    if isinstance(runtime, ModelRuntime):
        return Model(runtime)
    return EmbeddingModel(runtime)


class LLM(TaskMethods):
    """The style of the original design documents: ``llm.set_model(name); llm.generate_text(...)``,
    and the task helpers: ``llm.translate("你好", to="en")``."""

    def __init__(self, **settings: Any):
        self._settings = settings
        self.model: Model | None = None

    def set_model(self, ref: str | Path) -> None:
        if self.model is not None:
            self.model.close()
        self.model = load_model(ref, **self._settings)

    def _require(self) -> Model:
        if self.model is None:
            raise InvalidRequest("No model set: call set_model('smollm2') first.")
        return self.model

    def generate_text(self, prompt: str, **sampling: Any) -> str:
        return self._require().generate_text(prompt, **sampling)

    def chat(self, messages: Messages, **sampling: Any) -> str:
        return self._require().chat(messages, **sampling)

    def _task(self, task: str, item: dict[str, Any], **options: Any) -> dict[str, Any]:
        return self._require()._task(task, item, **options)
