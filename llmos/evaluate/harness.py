"""lm-evaluation-harness with llmos as its model backend: ``LlmosLM`` (model type ``"llmos"``)
answers lm-eval's three request kinds through the llmos engine — loglikelihood from prompt logprobs
of context + continuation, loglikelihood_rolling by sliding windows, generate_until greedily —
and ``multiple_choice_accuracy`` is llmos's own scorer for the same items."""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from llmos.engine.sampling_params import SamplingParams
from llmos.evaluate.perplexity import score_tokens


def _eos_id(runtime: Any) -> int:
    eos = runtime.tokenizer.hf.eos_token_id
    return int(eos if eos is not None else min(runtime.tokenizer.eos_token_ids))


def _pair_ids(model: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) split as lm-eval's HF backend does: encode the whole text
    and the context, so the boundary token is the one the tokenizer really makes."""
    spaces = len(context) - len(context.rstrip())
    if spaces:  # a trailing space belongs to the continuation (" Paris" is one token)
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = model.tokenize(context + continuation)
    context_ids = model.tokenize(context)
    return whole[: len(context_ids)], whole[len(context_ids) :]


def loglikelihoods(model: Any, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    """(sum of the continuation's token logprobs, whether each is the argmax) per (context,
    continuation), in one engine batch. Long inputs keep their last ``max_model_len - 1`` tokens."""
    runtime = model.runtime
    limit = runtime.max_model_len - 1
    prompts, num_continuation = [], []
    for context, continuation in pairs:
        context_ids, continuation_ids = _pair_ids(model, context, continuation)
        if not context_ids:  # score the first token too, given end-of-text (as lm-eval's HF backend)
            context_ids = [_eos_id(runtime)]
        prompts.append((context_ids + continuation_ids)[-limit:])
        num_continuation.append(len(continuation_ids))
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
    results = runtime.engine.generate_batch(prompts, [params] * len(prompts))
    answers = []
    for prompt, count, result in zip(prompts, num_continuation, results, strict=True):
        if result.finish_reason == "error" or result.prompt_logprobs is None:
            raise RuntimeError(f"scoring failed: {result.error}")
        entries = result.prompt_logprobs[len(prompt) - count :]
        total = sum(e.logprob for e in entries if e is not None)
        is_greedy = all(e is not None and e.top and e.top[0][0] == e.token_id for e in entries)
        answers.append((total, is_greedy))
    return answers


def multiple_choice_accuracy(model: Any, items: list[tuple[str, list[str], int]]) -> float:
    """llmos's own scorer: the fraction of (context, choices, answer index) items whose highest
    loglikelihood choice (``" " + choice``) is the answer — lm-eval's ``acc`` for multiple_choice."""
    pairs = [(context, " " + choice) for context, choices, _ in items for choice in choices]
    scores = iter(loglikelihoods(model, pairs))
    num_correct = 0
    for _, choices, answer in items:
        values = [next(scores)[0] for _ in choices]
        num_correct += values.index(max(values)) == answer
    return num_correct / len(items)


@register_model("llmos")
class LlmosLM(LM):
    """An lm-eval ``LM`` over an ``llmos.Model`` (``model=``) or a registry ref (``pretrained=``)."""

    def __init__(self, model: Any = None, pretrained: str | None = None, **_: Any) -> None:
        super().__init__()
        if model is None:
            import llmos

            model = llmos.load_model(pretrained or "smollm2")
        self.model = model

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return loglikelihoods(self.model, [tuple(r.args) for r in requests])

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        runtime = self.model.runtime
        max_length = runtime.max_model_len - 1
        answers = []
        for request in requests:
            token_ids = [_eos_id(runtime), *self.model.tokenize(request.args[0])]
            total_logprob, _ = score_tokens(runtime, token_ids, max_length, max(1, max_length // 2))
            answers.append(total_logprob)
        return answers

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        runtime = self.model.runtime
        prompts, params, stops = [], [], []
        for request in requests:
            context, gen_kwargs = request.args
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_tokens = int(gen_kwargs.get("max_gen_toks", 256))
            prompts.append(self.model.tokenize(context)[-(runtime.max_model_len - max_tokens) :])
            params.append(SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=until))
            stops.append(until)
        results = runtime.engine.generate_batch(prompts, params)
        texts = []
        for result, until in zip(results, stops, strict=True):
            text = result.text
            for stop in until:  # the engine stops at them; cut again in case one spans the end
                text = text.split(stop)[0]
            texts.append(text)
        return texts
