"""A local safety classifier as a guard: the text goes into a Llama-Guard-style prompt, a model
answers "safe" or "unsafe" (then, optionally, a line of violated categories such as "S1,S3").

``ClassifierGuard`` takes any ``classify(prompt) -> answer`` callable; ``runtime_classifier`` builds
one from a loaded ``ModelRuntime``: greedy, and constrained to answer exactly "safe" or "unsafe".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmos.errors import InvalidRequest
from llmos.guardrails.hooks import Action, Verdict

if TYPE_CHECKING:
    from llmos.runtime.model_runtime import ModelRuntime

# Llama Guard 3's hazard taxonomy (MLCommons).
LLAMA_GUARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

# Llama Guard 3's prompt; {role} is "User" (input) or "Agent" (output).
LLAMA_GUARD_TEMPLATE = """Task: Check if there is unsafe content in '{role}' messages in conversations \
according to our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

{role}: {text}

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories."""

ANSWERS = ["safe", "unsafe"]


def parse_guard_answer(answer: str) -> tuple[bool, list[str]]:
    """``(is_safe, violated category codes)`` from a Llama Guard answer such as "safe" or
    "unsafe\\nS1,S3" (surrounding whitespace and an end-of-turn token are ignored). Raises
    ValueError for anything else, which the guard turns into a block."""
    lines = [line.strip() for line in answer.replace("<|eot_id|>", "").strip().splitlines()]
    verdict = lines[0].lower() if lines else ""
    if verdict == "safe":
        return True, []
    if verdict == "unsafe":
        codes = lines[1].split(",") if len(lines) > 1 else []
        return False, [code.strip() for code in codes if code.strip()]
    raise ValueError("the classifier answered neither 'safe' nor 'unsafe'")


class ClassifierGuard:
    """Blocks (or, with ``action=FLAG``, flags) what the classifier calls unsafe.

    ``categories``: code -> name, listed in the prompt (default: Llama Guard 3's). ``template``: a
    ``str.format`` template with ``{role}``, ``{categories}`` and ``{text}``. Has no ``window``, so
    a stream it guards is held back whole and judged at its end.
    """

    def __init__(
        self,
        classify: Callable[[str], str],
        categories: dict[str, str] | None = None,
        template: str = LLAMA_GUARD_TEMPLATE,
        *,
        action: Action = Action.BLOCK,
    ) -> None:
        self.classify = classify
        self.categories = dict(LLAMA_GUARD_CATEGORIES if categories is None else categories)
        self.template = template
        self.action = action
        try:
            self.prompt("", "input")
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidRequest(
                f"Classifier template is invalid ({type(exc).__name__}: {exc}); it may use only "
                "{role}, {categories} and {text} (write other braces as {{ and }}).",
                param="template",
            ) from exc

    def prompt(self, text: str, stage: str) -> str:
        listed = "\n".join(f"{code}: {name}." for code, name in self.categories.items())
        role = "User" if stage == "input" else "Agent"
        return self.template.format(role=role, categories=listed, text=text)

    def check(self, text: str, stage: str) -> Verdict:
        is_safe, codes = parse_guard_answer(self.classify(self.prompt(text, stage)))
        if is_safe:
            return Verdict()
        named = ", ".join(f"{c} ({self.categories[c]})" if c in self.categories else c for c in codes)
        return Verdict(self.action, reason=f"unsafe content{': ' + named if named else ''}")


def runtime_classifier(runtime: ModelRuntime) -> Callable[[str], str]:
    """``classify(prompt) -> "safe" | "unsafe"`` on ``runtime``: the prompt as one user turn of the
    model's chat template, decoded greedily under a choice constraint. ``classify`` raises
    GenerationFailed when the engine fails the request."""
    from llmos.engine.sampling_params import SamplingParams
    from llmos.engine.structured_output import StructuredOutput
    from llmos.errors import GenerationFailed

    params = SamplingParams(
        max_tokens=max(len(a.encode()) for a in ANSWERS) + 1,  # a token has at least one byte
        temperature=0.0,
        structured_output=StructuredOutput(choice=ANSWERS),
    )

    def classify(prompt: str) -> str:
        prompt_ids = runtime.tokenizer.encode_chat([{"role": "user", "content": prompt}], True)
        [completion] = runtime.engine.generate_batch([prompt_ids], [params])
        if completion.error:
            raise GenerationFailed.because(completion.error)
        return completion.text

    return classify
