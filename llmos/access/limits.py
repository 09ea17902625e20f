"""Rate limits and token budgets per API key, in memory: fixed windows aligned to the clock, and
reservations that admission takes up front and ``Reservation.settle`` trues up to what was used.

Requests count at admission and are never refunded (a failed request still counts); tokens are
reserved as prompt + max_tokens, so a burst cannot overshoot a limit, and the unused part is
refunded at settle. Budgets are seeded once per key and period from the usage table.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from llmos.errors import BudgetExceeded, InvalidRequest, RateLimited

MINUTE = 60
DAY = 86_400  # the epoch is a UTC midnight, so day windows start at UTC midnights
PERIODS = ("day", "week", "month")


def _count(raw: object, what: str, param: str) -> int:
    """A whole number ≥ 0 from ``60``, ``"20000"``, ``"20_000"`` or ``"1e6"``; raises InvalidRequest."""
    value: Any = raw
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            value = float(raw)  # also "20_000" and "1e6"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"{what} must be a whole number ≥ 0, not {raw!r}.", param=param)
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits over all its models (or over one model); ``None`` means unlimited. Tokens are
    prompt + completion tokens; ``max_parallel`` counts requests in flight at once."""

    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    prompt_tpm: int | None = None
    completion_tpm: int | None = None
    max_parallel: int | None = None

    def __post_init__(self) -> None:
        for name in _LIMIT_NAMES:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _count(value, f"Limit {name}", "limits"))

    @classmethod
    def parse(cls, text: str) -> Limits:
        """``"rpm=60,tpm=20000,max_parallel=4"`` as Limits (``""``: no limits); raises InvalidRequest
        naming a bad or unknown field and listing the valid ones."""
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, raw = (s.strip() for s in item.partition("="))
            if name not in _LIMIT_NAMES or not sep:
                raise InvalidRequest(
                    f"Bad limit {item!r}: write name=value, comma-separated, with names from "
                    f"{', '.join(_LIMIT_NAMES)} (e.g. rpm=60,tpm=20000).",
                    param="limits",
                )
            if name in values:
                raise InvalidRequest(f"Limit {name} is given twice in {text!r}.", param="limits")
            values[name] = raw
        return cls(**values)  # type: ignore[arg-type]  # __post_init__ turns the strings into ints

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        """The inverse of ``to_dict``; raises InvalidRequest for an unknown name or a bad value."""
        if unknown := [name for name in data if name not in _LIMIT_NAMES]:
            names = ", ".join(unknown)
            raise InvalidRequest(
                f"Unknown limit(s) {names}; valid: {', '.join(_LIMIT_NAMES)}.", param="limits"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, int]:
        """The limits that are set (``{}`` for none)."""
        return {name: value for name in _LIMIT_NAMES if (value := getattr(self, name)) is not None}

    @property
    def is_empty(self) -> bool:
        return not self.to_dict()


_LIMIT_NAMES = tuple(f.name for f in fields(Limits))


@dataclass(frozen=True, slots=True)
class Budget:
    """A key's token budget (prompt + completion) per calendar period in UTC; ``soft`` is the share
    of it at which the key's owner is warned (``on_budget_event(..., "soft", ...)``)."""

    tokens: int
    period: Literal["day", "week", "month"]
    soft: float = 0.8

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", _count(self.tokens, "Budget tokens", "budget"))
        if self.period not in PERIODS:
            raise InvalidRequest(
                f"Unknown budget period {self.period!r}; use one of {', '.join(PERIODS)}.", param="budget"
            )
        if isinstance(self.soft, bool) or not isinstance(self.soft, int | float) or not 0 < self.soft <= 1:
            raise InvalidRequest(f"Budget soft must be a share in (0, 1], not {self.soft!r}.", param="budget")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"1000000/month"``, ``"50000/day"``, ``"1e6/week"``, optionally ``",soft=0.9"``; raises
        InvalidRequest saying the expected form."""
        head, _, tail = text.partition(",")
        tokens, sep, period = (s.strip() for s in head.partition("/"))
        soft_name, soft_sep, soft = (s.strip() for s in tail.partition("="))
        if not sep or (tail and (soft_name != "soft" or not soft_sep)):
            raise InvalidRequest(
                f"Bad budget {text!r}: write TOKENS/PERIOD with PERIOD one of {', '.join(PERIODS)}, "
                "optionally ,soft=SHARE (e.g. 1000000/month,soft=0.9).",
                param="budget",
            )
        share: Any = soft if tail else 0.8
        with contextlib.suppress(ValueError):
            share = float(share)  # a string left as it is: __post_init__ refuses it
        return cls(tokens=_count(tokens, "Budget tokens", "budget"), period=period, soft=share)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        return cls(tokens=data["tokens"], period=data["period"], soft=data.get("soft", 0.8))

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "period": self.period, "soft": self.soft}

    def period_bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """The UTC period holding ``now`` (a naive ``now`` is taken as UTC): from midnight, Monday
        midnight or the 1st's midnight, to the next one."""
        now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.period == "day":
            return start, start + timedelta(days=1)
        if self.period == "week":
            start -= timedelta(days=start.weekday())
            return start, start + timedelta(days=7)
        start = start.replace(day=1)
        return start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it (Go's style, to the
    millisecond): ``"20ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``, ``"2h3m4s"``."""
    ms = max(0, round(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(round(seconds, 3)))


@dataclass(slots=True)
class _Window:
    """The counts of one fixed window, number ``index = floor(clock() / length)``."""

    length: int
    index: int
    num_requests: int = 0
    num_tokens: int = 0
    num_prompt_tokens: int = 0
    num_completion_tokens: int = 0

    def reset_in(self, now: float) -> float:
        return (self.index + 1) * self.length - now

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.num_tokens += prompt_tokens + completion_tokens
        self.num_prompt_tokens += prompt_tokens
        self.num_completion_tokens += completion_tokens


@dataclass(slots=True)
class _Scope:
    """The counts of one key over all its models, or of one (key, model). Only the current minute
    and day are kept: a window is replaced (and the old one dropped) when the clock leaves it."""

    minute: _Window
    day: _Window
    num_in_flight: int = 0

    def roll(self, now: float) -> _Scope:
        if self.minute.index != int(now // MINUTE):
            self.minute = _Window(MINUTE, int(now // MINUTE))
        if self.day.index != int(now // DAY):
            self.day = _Window(DAY, int(now // DAY))
        return self


@dataclass(slots=True)
class _Spend:
    """A key's budget in one period: tokens settled (seeded from the usage table) and reserved."""

    budget: Budget
    start: datetime
    end: datetime
    num_settled: int
    num_reserved: int = 0
    is_soft_sent: bool = False
    is_hard_sent: bool = False

    @property
    def num_remaining(self) -> int:
        return max(0, self.budget.tokens - self.num_settled - self.num_reserved)


@dataclass(slots=True)
class _Refusal:
    reason: str
    message: str
    retry_after: int
    is_permanent: bool = False


@dataclass(slots=True, eq=False)
class Reservation:
    """One admitted request's hold on its key's limits; ``settle`` it exactly when the request ends
    (finished, failed or cancelled). ``headers`` are its ``x-ratelimit-*`` headers."""

    key_id: str
    model: str
    prompt_tokens: int
    max_completion_tokens: int
    headers: dict[str, str]
    _limiter: RateLimiter = field(repr=False)
    _charges: list[tuple[_Scope, _Window, _Window]] = field(repr=False)
    _spend: _Spend | None = field(repr=False)
    is_settled: bool = False

    def settle(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace the reserved tokens by the used ones and free the parallel slot; idempotent."""
        self._limiter._settle(self, prompt_tokens, completion_tokens)


Where = tuple[_Scope, Limits, str]  # a scope, the limits that apply to it, and its name in messages


class RateLimiter:
    """Admits requests against keys' limits and budgets; thread-safe (one lock around every change).

    A settle refunds into the windows its reservation was made in: if a window rolled over since,
    the refund goes nowhere (the old window is gone) and the request counts, as reserved, in the
    window it was admitted in — never in the new one. Budget spend likewise goes to the period the
    request was admitted in. ``budget_used(key_id, period_start)`` is called under the lock, once
    per key and period (a quick read of the usage table).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        budget_used: Callable[[str, datetime], int] | None = None,
        on_budget_event: Callable[[str, str, int, int], None] | None = None,  # key, soft|hard, used, tokens
    ) -> None:
        self._clock = clock
        self._budget_used = budget_used
        self._on_budget_event = on_budget_event
        self._lock = threading.Lock()
        self._scopes: dict[str, dict[str | None, _Scope]] = {}  # key_id -> model (None: all) -> scope
        self._spends: dict[str, _Spend] = {}

    def admit(
        self,
        key_id: str,
        model: str,
        *,
        limits: Limits | None,
        model_limits: Limits | None,
        budget: Budget | None,
        prompt_tokens: int,
        max_completion_tokens: int,
    ) -> Reservation:
        """Count the request and reserve its tokens (prompt + max_completion) against the key's
        limits, its limits on ``model`` and its budget — all of them or none. Returns the
        Reservation to settle; raises RateLimited (``reason`` names the limit) or BudgetExceeded."""
        assert prompt_tokens >= 0 and max_completion_tokens >= 0
        with self._lock:
            now = self._clock()
            wheres: list[Where] = []
            for scope_model, scope_limits, name in (
                (None, limits, f"key {key_id}"),
                (model, model_limits, f"key {key_id} on model {model}"),
            ):
                if scope_limits is not None and not scope_limits.is_empty:
                    wheres.append((self._scope(key_id, scope_model, now), scope_limits, name))
            spend = None if budget is None else self._spend(key_id, budget, now)
            refusals = [r for w in wheres for r in _check(w, now, prompt_tokens, max_completion_tokens)]
            if spend is not None:
                refusals += _check_budget(spend, key_id, now, prompt_tokens, max_completion_tokens)
            if not refusals:
                for scope, _, _ in wheres:
                    scope.num_in_flight += 1
                    for window in (scope.minute, scope.day):
                        window.num_requests += 1
                        window.add(prompt_tokens, max_completion_tokens)
                if spend is not None:
                    spend.num_reserved += prompt_tokens + max_completion_tokens
                charges = [(scope, scope.minute, scope.day) for scope, _, _ in wheres]
                headers = _headers(wheres, now)
                return Reservation(
                    key_id, model, prompt_tokens, max_completion_tokens, headers, self, charges, spend
                )
            # The most lasting refusal: retrying after a shorter one would only be refused again.
            refusal = max(refusals, key=lambda r: (r.is_permanent, r.retry_after))
            events = []
            if refusal.reason == "budget" and spend is not None and not spend.is_hard_sent:
                spend.is_hard_sent = True
                events.append((key_id, "hard", spend.num_settled, spend.budget.tokens))
            headers = _headers(wheres, now)
        self._send(events)
        error_class = BudgetExceeded if refusal.reason == "budget" else RateLimited
        raise error_class(
            refusal.message, retry_after=refusal.retry_after, reason=refusal.reason, headers=headers
        )

    def budget_remaining(self) -> dict[str, int]:
        """Tokens left in the current period (budget − settled − reserved, ≥ 0) of every key whose
        budget this limiter has seen."""
        with self._lock:
            now = self._clock()
            return {
                key_id: self._spend(key_id, spend.budget, now).num_remaining
                for key_id, spend in list(self._spends.items())
            }

    def forget(self, key_id: str) -> None:
        """Drop a key's counts and budget state (when it is revoked or rotated); its requests in
        flight settle into the dropped state and no longer count."""
        with self._lock:
            self._scopes.pop(key_id, None)
            self._spends.pop(key_id, None)

    def _scope(self, key_id: str, model: str | None, now: float) -> _Scope:
        scopes = self._scopes.setdefault(key_id, {})
        if model not in scopes:
            scopes[model] = _Scope(_Window(MINUTE, int(now // MINUTE)), _Window(DAY, int(now // DAY)))
        return scopes[model].roll(now)

    def _spend(self, key_id: str, budget: Budget, now: float) -> _Spend:
        """The key's spend in the period holding ``now``, seeded from ``budget_used`` when new."""
        start, end = budget.period_bounds(datetime.fromtimestamp(now, UTC))
        spend = self._spends.get(key_id)
        if spend is None or spend.start != start or spend.budget.period != budget.period:
            used = 0 if self._budget_used is None else self._budget_used(key_id, start)
            # A spend already past the soft line was warned about before the restart (or seeding).
            spend = _Spend(budget, start, end, used, is_soft_sent=used >= budget.soft * budget.tokens)
            self._spends[key_id] = spend
        spend.budget = budget  # the key's budget may have been edited within the period
        return spend

    def _settle(self, reservation: Reservation, prompt_tokens: int, completion_tokens: int) -> None:
        assert prompt_tokens >= 0 and completion_tokens >= 0
        events: list[tuple[str, str, int, int]] = []
        with self._lock:
            if reservation.is_settled:
                return
            reservation.is_settled = True
            prompt_delta = prompt_tokens - reservation.prompt_tokens
            completion_delta = completion_tokens - reservation.max_completion_tokens
            for scope, minute, day in reservation._charges:
                scope.num_in_flight -= 1
                minute.add(prompt_delta, completion_delta)
                day.add(prompt_delta, completion_delta)
            spend = reservation._spend
            if spend is not None:
                spend.num_reserved -= reservation.prompt_tokens + reservation.max_completion_tokens
                spend.num_settled += prompt_tokens + completion_tokens
                if not spend.is_soft_sent and spend.num_settled >= spend.budget.soft * spend.budget.tokens:
                    spend.is_soft_sent = True
                    events.append((reservation.key_id, "soft", spend.num_settled, spend.budget.tokens))
        self._send(events)

    def _send(self, events: list[tuple[str, str, int, int]]) -> None:
        # Outside the lock: the callback may write to the store or call a webhook.
        if self._on_budget_event is not None:
            for event in events:
                self._on_budget_event(*event)


_UNITS = {
    "rpm": ("requests per minute", ""),
    "rpd": ("requests per day", ""),
    "tpm": ("tokens per minute", "lower max_tokens or shorten the prompt"),
    "tpd": ("tokens per day", "lower max_tokens or shorten the prompt"),
    "prompt_tpm": ("prompt tokens per minute", "shorten the prompt"),
    "completion_tpm": ("completion tokens per minute", "lower max_tokens"),
}


def _check(where: Where, now: float, prompt_tokens: int, completion_tokens: int) -> list[_Refusal]:
    """The limits of ``where`` that this request would break (empty if it fits)."""
    scope, limits, name = where
    m, d = scope.minute, scope.day
    refusals = []
    if limits.max_parallel is not None and scope.num_in_flight >= limits.max_parallel:
        message = (
            f"Too many requests in flight for {name}: max_parallel={limits.max_parallel}, "
            f"{scope.num_in_flight} running; retry after 1 s, when one of them has finished."
        )
        refusals.append(_Refusal("max_parallel", message, 1, is_permanent=limits.max_parallel == 0))
    total = prompt_tokens + completion_tokens
    for reason, window, used, asked in (
        ("rpm", m, m.num_requests, 1),
        ("rpd", d, d.num_requests, 1),
        ("tpm", m, m.num_tokens, total),
        ("tpd", d, d.num_tokens, total),
        ("prompt_tpm", m, m.num_prompt_tokens, prompt_tokens),
        ("completion_tpm", m, m.num_completion_tokens, completion_tokens),
    ):
        limit = getattr(limits, reason)
        if limit is None or used + asked <= limit:
            continue
        retry = _retry_after(window.reset_in(now))
        unit, fix = _UNITS[reason]
        what = {
            "tpm": f"{total} tokens (prompt {prompt_tokens} + max_tokens {completion_tokens})",
            "prompt_tpm": f"{prompt_tokens} prompt tokens",
            "completion_tpm": f"{completion_tokens} completion tokens (max_tokens)",
        }.get(reason.replace("tpd", "tpm"), "1 request")
        if asked > limit:
            fix = fix or "ask an admin to raise the limit"
            message = f"This request can never fit {name}'s {reason}={limit} {unit}: it needs {what}; {fix}."
        else:
            fix = f"{fix}, or retry after {retry} s" if fix else f"retry after {retry} s"
            message = (
                f"Rate limit reached for {name}: {reason}={limit} {unit}, {max(0, limit - used)} remaining, "
                f"and this request needs {what}; {fix}."
            )
        refusals.append(_Refusal(reason, message, retry, is_permanent=asked > limit))
    return refusals


def _check_budget(
    spend: _Spend, key_id: str, now: float, prompt_tokens: int, completion_tokens: int
) -> list[_Refusal]:
    """The budget refusal for this request, if its reservation could overspend the period."""
    total = prompt_tokens + completion_tokens
    budget, remaining = spend.budget, spend.num_remaining
    if total <= remaining:
        return []
    retry = _retry_after(spend.end.timestamp() - now)
    per = f"{budget.tokens} tokens per {budget.period}"
    resets = f"the budget resets at {spend.end:%Y-%m-%d %H:%M} UTC"
    asks = f"{total} tokens (prompt {prompt_tokens} + max_tokens {completion_tokens})"
    if total > budget.tokens:
        message = f"This request can never fit the budget of key {key_id} ({per}): it reserves {asks}."
    elif remaining == 0:
        message = f"The budget of key {key_id} ({per}) is spent; {resets} (retry after {retry} s)."
    else:
        message = (
            f"The budget of key {key_id} ({per}) has {remaining} tokens left and this request reserves "
            f"{asks}; lower max_tokens, or retry after {retry} s ({resets})."
        )
    return [_Refusal("budget", message, retry, is_permanent=total > budget.tokens)]


def _headers(wheres: list[Where], now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the tightest request limit and the tightest token
    limit (least remaining; on a tie, the later reset); a kind without limits has no headers."""
    candidates: dict[str, list[tuple[int, float, int]]] = {"requests": [], "tokens": []}
    for scope, limits, _ in wheres:
        m, d = scope.minute, scope.day
        for kind, window, limit, used in (
            ("requests", m, limits.rpm, m.num_requests),
            ("requests", d, limits.rpd, d.num_requests),
            ("tokens", m, limits.tpm, m.num_tokens),
            ("tokens", d, limits.tpd, d.num_tokens),
            ("tokens", m, limits.prompt_tpm, m.num_prompt_tokens),
            ("tokens", m, limits.completion_tpm, m.num_completion_tokens),
        ):
            if limit is not None:
                candidates[kind].append((max(0, limit - used), -window.reset_in(now), limit))
    headers = {}
    for kind, found in candidates.items():
        if found:
            remaining, minus_reset, limit = min(found)
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_reset(-minus_reset)
    return headers
