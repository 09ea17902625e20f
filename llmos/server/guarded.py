"""Guardrails and admission around one OpenAI request: the rules of the request's key and model run
on its input before the model, on its output after, and on its stream through a hold-back window;
every decision other than allow is counted (``llmos:guardrail_actions``), put in the request's
access-log line and, for a block, in the audit log. A request without rules pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmos.engine.sampling_params import SamplingParams
from llmos.errors import GuardrailBlocked
from llmos.monitor.metrics import ServerMetrics
from llmos.monitor.requests import current_request
from llmos.server.access import AccessControl, current_principal
from llmos.server.protocol import ChatCompletionRequest, CompletionRequest


class RequestGuard:
    """The guardrail set of one request, recording what it decides."""

    def __init__(self, rules: Any, metrics: ServerMetrics, access: AccessControl | None):
        self.rules, self.metrics, self.access = rules, metrics, access

    @classmethod
    def of(
        cls,
        config: Any,
        model: str,
        metrics: ServerMetrics,
        access: AccessControl | None,
        runtime_of: Callable[[str], Any] | None = None,
    ) -> RequestGuard | None:
        """The guard for ``model`` and the current key, or None without rules. ``runtime_of(name)``
        gives a classifier rule its model (loaded when the rule first judges something)."""
        if config is None:
            return None

        def classifier_for(name: str) -> Callable[[str], str]:
            def classify(prompt: str) -> str:
                from llmos.guardrails import runtime_classifier

                if runtime_of is None:
                    raise RuntimeError("no model pool to run the classifier on")
                return runtime_classifier(runtime_of(name))(prompt)

            return classify

        rules = config.for_request(current_principal().key_id, model, classifier_for=classifier_for)
        return None if rules.is_empty else cls(rules, metrics, access)

    def _note(self, decisions: list[Any]) -> None:
        record = current_request()
        for d in decisions:
            self.metrics.guardrail_actions.labels(d.stage, d.rule, str(d.action)).inc()
            if record is not None:
                record.guardrail_actions.append(d.label)

    def _blocked(self, exc: GuardrailBlocked) -> GuardrailBlocked:
        self.metrics.guardrail_actions.labels(exc.stage, exc.rule, "block").inc()
        record = current_request()
        if record is not None:
            record.guardrail_actions.append(f"{exc.stage}:{exc.rule}:block")
        if self.access is not None:
            details = {"stage": exc.stage, "model": None if record is None else record.model}
            self.access.record_action("guardrail.blocked", exc.rule, details)
        return exc

    def texts(self, texts: list[str]) -> list[str]:
        try:
            rewritten, decisions = self.rules.check_input(texts)
        except GuardrailBlocked as exc:
            raise self._blocked(exc) from None
        self._note(decisions)
        return list(rewritten)

    def output(self, text: str) -> str:
        try:
            rewritten, decisions = self.rules.check_output(text)
        except GuardrailBlocked as exc:
            raise self._blocked(exc) from None
        self._note(decisions)
        return str(rewritten)

    def stream(self) -> GuardedStream:
        return GuardedStream(self, self.rules.stream())

    def chat(self, body: ChatCompletionRequest) -> ChatCompletionRequest:
        """``body`` with its messages' text through the input rules."""
        texts = [m.to_template()["content"] for m in body.messages]
        rewritten = self.texts(texts)
        if rewritten == texts:
            return body
        messages = [
            m if new == old else m.model_copy(update={"content": new})
            for m, old, new in zip(body.messages, texts, rewritten)
        ]
        return body.model_copy(update={"messages": messages})

    def completion(self, body: CompletionRequest) -> CompletionRequest:
        """``body`` with its text prompts through the input rules (token-id prompts pass as they are)."""
        prompt = body.prompt
        if isinstance(prompt, str):
            return body.model_copy(update={"prompt": self.texts([prompt])[0]})
        if prompt and all(isinstance(p, str) for p in prompt):
            return body.model_copy(update={"prompt": self.texts(list(prompt))})  # type: ignore[arg-type]
        return body


class GuardedStream:
    """One choice's stream through the rules: ``feed`` returns what may be sent now."""

    def __init__(self, guard: RequestGuard, inner: Any):
        self.guard, self.inner = guard, inner
        self._noted = 0

    def _flush_notes(self) -> None:
        decisions = self.inner.decisions[self._noted :]
        self._noted = len(self.inner.decisions)
        self.guard._note(decisions)

    def feed(self, text: str) -> str:
        try:
            released = self.inner.feed(text)
        except GuardrailBlocked as exc:
            raise self.guard._blocked(exc) from None
        self._flush_notes()
        return str(released)

    def finish(self) -> str:
        try:
            released = self.inner.finish()
        except GuardrailBlocked as exc:
            raise self.guard._blocked(exc) from None
        self._flush_notes()
        return str(released)


def admit(
    access: AccessControl | None,
    model: str,
    prompts: list[list[int]],
    params: list[SamplingParams],
    max_model_len: int,
) -> None:
    """Reserve the request's worst case — its prompts plus every token each prompt's choices may
    generate — against the key's limits and budget (429 if it does not fit); settled when the
    request ends."""
    if access is None:
        return
    completion = sum(
        p.max_tokens or max(1, max_model_len - len(prompt)) for prompt in prompts for p in params
    )
    access.admit(model, sum(len(prompt) for prompt in prompts), completion)


def keep_texts(log_prompts: bool, prompt: str | None = None, output: str | None = None) -> None:
    """With ``LLMOS_LOG_PROMPTS=1``, keep the prompt / output on the request's record, PII-masked."""
    record = current_request()
    if not log_prompts or record is None:
        return
    from llmos.data.pii import mask_pii

    if prompt is not None:
        record.prompt_text = mask_pii(prompt)[0]
    if output is not None:
        record.output_text = (record.output_text or "") + mask_pii(output)[0]
