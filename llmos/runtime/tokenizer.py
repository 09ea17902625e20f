"""The text side of a model: encode, decode, chat template and end-of-sequence ids.

Wraps a Hugging Face fast tokenizer loaded from local files only (never remote code). The engine
sees only the ``decode`` method, through its ``Tokenizer`` protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmos.errors import InvalidModelFile, InvalidRequest
from llmos.runtime.chat_template import render_chat_template


class TextTokenizer:
    def __init__(self, hf_tokenizer: Any, chat_template: str | None, eos_token_ids: frozenset[int]):
        self.hf = hf_tokenizer
        self.chat_template = chat_template
        self.eos_token_ids = eos_token_ids

    @classmethod
    def from_dir(cls, model_dir: Path) -> TextTokenizer:
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise InvalidModelFile(f"Cannot load the tokenizer from {model_dir.name}: {exc}") from exc
        template = getattr(hf, "chat_template", None)
        template_file = model_dir / "chat_template.jinja"
        if not template and template_file.exists():
            template = template_file.read_text()
        return cls(hf, template if isinstance(template, str) else None, _eos_ids(model_dir, hf))

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def render_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        if not self.chat_template:
            raise InvalidRequest(
                "This model has no chat template (it is a base model): use a completion instead of chat.",
                param="messages",
            )
        if not messages:
            raise InvalidRequest("messages must contain at least one message.", param="messages")
        return render_chat_template(
            self.chat_template,
            messages,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            bos_token=self.hf.bos_token or "",
            eos_token=self.hf.eos_token or "",
        )

    def encode_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        # The template writes the special tokens itself (BOS included), so none are added here.
        text = self.render_chat(messages, add_generation_prompt, tools)
        return self.encode(text, add_special_tokens=False)


def _eos_ids(model_dir: Path, hf: Any) -> frozenset[int]:
    ids: set[int] = set()
    if hf.eos_token_id is not None:
        ids.add(int(hf.eos_token_id))
    gen_config = model_dir / "generation_config.json"
    if gen_config.exists():
        eos = json.loads(gen_config.read_text()).get("eos_token_id")
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    return frozenset(ids)
