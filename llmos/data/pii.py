"""PII masking: emails, IBANs, credit card numbers, IPv4/IPv6 addresses and phone numbers become
``[EMAIL]``, ``[IBAN]``, ``[CREDIT_CARD]``, ``[IP]`` and ``[PHONE]``, with a count per kind.

Patterns find candidates; checksums (IBAN mod 97, card Luhn) and ``ipaddress`` confirm them, so an
ordinary number, a date or a version string is left alone. Kinds run in a fixed order (most
specific first) so a card number is never taken for a phone number.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

PII_KINDS = ("email", "iban", "credit_card", "ipv6", "ipv4", "phone")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _luhn_ok(text: str) -> bool:
    digits = _digits(text)
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    iban = text.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone_ok(text: str) -> bool:
    return 7 <= len(_digits(text)) <= 15


@dataclass(frozen=True, slots=True)
class PiiPattern:
    kind: str
    token: str
    pattern: re.Pattern[str]
    is_valid: Callable[[str], bool]


PATTERNS = (
    PiiPattern(
        "email",
        "[EMAIL]",
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        bool,
    ),
    PiiPattern(
        "iban", "[IBAN]", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), _iban_ok
    ),
    PiiPattern(
        "credit_card", "[CREDIT_CARD]", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _luhn_ok
    ),
    PiiPattern(
        "ipv6", "[IP]", re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), _ip_ok
    ),
    PiiPattern("ipv4", "[IP]", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)"), _ip_ok),
    PiiPattern(
        "phone",
        "[PHONE]",
        # +CC then groups; (NNN) NNN-NNNN / NNN-NNN-NNNN; or a trunk 0 then groups (0171 2345678)
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"
            r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[ .-]\d{3}[ .-]\d{4}"
            r"|0\d{1,4}[ /.-]\d{3,4}(?:[ .-]?\d{2,4}){0,2})(?![\w])"
        ),
        _phone_ok,
    ),
)


def mask_pii(text: str) -> tuple[str, Counter[str]]:
    """``text`` with every PII match replaced by its token, and how many of each kind were masked."""
    counts: Counter[str] = Counter()
    for pii in PATTERNS:

        def replace(match: re.Match[str], pii: PiiPattern = pii) -> str:
            if not pii.is_valid(match.group(0)):
                return match.group(0)
            counts[pii.kind] += 1
            return pii.token

        text = pii.pattern.sub(replace, text)
    return text, counts
