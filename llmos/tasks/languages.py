"""Language codes for translation: normalise what users write ("fr", "French", "中文", "pt-BR") to an
ISO 639-1 code, name a code in English for prompts, and detect a text's language (langid, with a
script check first so short Chinese, Japanese and Korean texts are not misread).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from llmos.errors import InvalidRequest

# code: (English name, other names users write). Small on purpose: the common languages.
LANGUAGES: dict[str, tuple[str, ...]] = {
    "en": ("English", "英语", "英文"),
    "zh": ("Chinese", "中文", "汉语", "漢語", "简体中文", "繁體中文", "mandarin", "普通话"),
    "fr": ("French", "français", "francais", "法语"),
    "de": ("German", "deutsch", "德语"),
    "es": ("Spanish", "español", "espanol", "西班牙语"),
    "it": ("Italian", "italiano", "意大利语"),
    "pt": ("Portuguese", "português", "portugues", "葡萄牙语"),
    "nl": ("Dutch", "nederlands"),
    "ru": ("Russian", "русский", "俄语"),
    "ja": ("Japanese", "日本語", "日语"),
    "ko": ("Korean", "한국어", "韩语"),
    "ar": ("Arabic", "العربية", "阿拉伯语"),
    "hi": ("Hindi", "हिन्दी"),
    "tr": ("Turkish", "türkçe"),
    "pl": ("Polish", "polski"),
    "sv": ("Swedish", "svenska"),
    "da": ("Danish", "dansk"),
    "fi": ("Finnish", "suomi"),
    "no": ("Norwegian", "norsk", "nb"),
    "cs": ("Czech", "čeština"),
    "el": ("Greek", "ελληνικά"),
    "he": ("Hebrew", "עברית", "iw"),
    "uk": ("Ukrainian", "українська"),
    "vi": ("Vietnamese", "tiếng việt"),
    "th": ("Thai", "ไทย"),
    "id": ("Indonesian", "bahasa indonesia"),
    "ms": ("Malay", "bahasa melayu"),
    "ro": ("Romanian", "română"),
    "hu": ("Hungarian", "magyar"),
    "fa": ("Persian", "farsi", "فارسی"),
}
_ALIASES = {alias.casefold(): code for code, names in LANGUAGES.items() for alias in (code, *names)} | {
    "zh-cn": "zh",
    "zh-hans": "zh",
    "zh-tw": "zh",
    "zh-hant": "zh",
    "cn": "zh",
}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LETTER = re.compile(r"[^\W\d_]")
CJK_CODES = frozenset({"zh", "ja", "ko"})


def normalize_language(value: str, param: str = "to") -> str:
    """The ISO 639-1 code for a code, a BCP 47 tag or a name; raises InvalidRequest naming ``param``."""
    key = value.strip().casefold().replace("_", "-")
    code = _ALIASES.get(key) or _ALIASES.get(key.split("-")[0])
    if code is None:
        known = ", ".join(f"{c} ({names[0]})" for c, names in list(LANGUAGES.items())[:8])
        raise InvalidRequest(
            f"{param}={value!r} is not a language this task knows; use an ISO 639-1 code or an English "
            f"name such as {known}, … ({len(LANGUAGES)} in all).",
            param=param,
        )
    return code


def language_name(code: str) -> str:
    """The English name of ``code`` (the code itself for one outside the table)."""
    return LANGUAGES[code][0] if code in LANGUAGES else code


def script_language(text: str) -> str | None:
    """zh/ja/ko when CJK script dominates the letters of ``text``; None otherwise."""
    letters = len(_LETTER.findall(text)) or 1
    if _HANGUL.search(text) and len(_HANGUL.findall(text)) / letters > 0.3:
        return "ko"
    if _KANA.search(text):
        return "ja"
    return "zh" if len(_HAN.findall(text)) / letters > 0.3 else None


_identifier: Any = None
_identifier_lock = threading.Lock()


def detect_language(text: str) -> str:
    """The most likely ISO 639-1 code of ``text`` (script first, then langid)."""
    global _identifier
    by_script = script_language(text)
    if by_script:
        return by_script
    with _identifier_lock:  # langid's module-level model loads lazily and is not thread-safe
        if _identifier is None:
            from langid.langid import LanguageIdentifier, model

            _identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        code, _ = _identifier.classify(text)
    return str(code)
