"""The server's access control: who a request comes from, whether its key's limits and budget admit
it, and what it cost — in one object per app (``app.state.access``).

``authenticate`` turns a bearer token into a ``Principal`` (admin keys from ``LLMOS_API_KEYS``, or a
stored key looked up on every request). ``admit`` reserves a request's worst case — its prompt plus
every token it may generate — against the key's windows and budget before anything runs; the
access middleware settles the reservation with what the request really used when its response is
done, however it ended, and writes the usage row. A server with no admin key and no stored key is
open (a laptop); the first ``llmos keys create`` closes it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from llmos.access.audit import AuditLog
from llmos.access.keys import KeyStore
from llmos.access.limits import RateLimiter, Reservation
from llmos.access.scopes import OPEN, SCOPES, Principal
from llmos.access.usage import UsageLog, UsageWriter, row_of
from llmos.config import Settings
from llmos.errors import KeyNotFound, RateLimited, Unauthorized
from llmos.monitor.metrics import ServerMetrics
from llmos.monitor.requests import RequestRecord, current_request
from llmos.store import Store

logger = logging.getLogger(__name__)

ADMIN_KEY_ID = "admin"
OPEN_CHECK_SECONDS = 1.0  # how long "this store has no keys" is believed before asking again

_principal: ContextVar[Principal] = ContextVar("llmos_principal", default=OPEN)
_reservation: ContextVar[list[Reservation] | None] = ContextVar("llmos_reservation", default=None)


def current_principal() -> Principal:
    """Who the request this code runs for comes from (``OPEN`` outside a request)."""
    return _principal.get()


class AccessControl:
    def __init__(self, settings: Settings, metrics: ServerMetrics, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.metrics = metrics
        self.admin_keys = [k.encode() for k in settings.api_key_list]
        self.store = Store(settings.database_url)
        self.keys = KeyStore(settings, self.store)
        self.usage = UsageLog(self.store)
        self.audit = AuditLog(self.store)
        self.writer = UsageWriter(self.usage)
        self.limiter = RateLimiter(
            clock=clock, budget_used=self.usage.tokens_since, on_budget_event=self._budget_event
        )
        self._open_until = 0.0  # monotonic time until which the store is known to have no keys

    def close(self) -> None:
        self.writer.close()
        self.keys.close()
        self.store.close()

    # --- who is asking -------------------------------------------------------------------------
    def _admin(self, index: int) -> Principal:
        return Principal(
            key_id=ADMIN_KEY_ID if index == 0 else f"{ADMIN_KEY_ID}{index + 1}",
            name="LLMOS_API_KEYS",
            scopes=frozenset(SCOPES),
            is_admin_key=True,
        )

    def is_open(self) -> bool:
        """No admin key and no active stored key: everyone may do everything (checked at most
        once a second; a key made since is enforced from then on)."""
        if self.admin_keys:
            return False
        now = time.monotonic()
        if now < self._open_until:
            return True
        if self.keys.has_active_keys():
            self._open_until = 0.0
            return False
        self._open_until = now + OPEN_CHECK_SECONDS
        return True

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization`` header; raises Unauthorized."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if self.is_open():
            return OPEN if not token else self._try(token) or OPEN
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Missing API key: send `Authorization: Bearer <key>`.")
        principal = self._try(token)
        if principal is None:
            raise Unauthorized("Invalid API key.")
        return principal

    def principal_for(self, key_id: str | None) -> Principal:
        """Who ``key_id`` stands for now (a batch's lines run as their submitter): raises
        Unauthorized once that key is revoked or gone, or its admin key no longer configured."""
        if key_id is None:  # submitted while the server had no keys
            return OPEN
        if key_id == ADMIN_KEY_ID or (
            key_id.startswith(ADMIN_KEY_ID) and key_id[len(ADMIN_KEY_ID) :].isdigit()
        ):
            index = 0 if key_id == ADMIN_KEY_ID else int(key_id[len(ADMIN_KEY_ID) :]) - 1
            if 0 <= index < len(self.admin_keys):
                return self._admin(index)
            raise Unauthorized(f"The admin key {key_id} (LLMOS_API_KEYS) is no longer configured.")
        try:
            key = self.keys.get(key_id)
        except KeyNotFound:
            raise Unauthorized(f"API key {key_id} no longer exists.") from None
        if not key.is_active:
            error = Unauthorized(f"API key {key_id} was revoked; ask for a new one.")
            error.code = "key_revoked"
            raise error
        return key.principal()

    def _try(self, token: str) -> Principal | None:
        # Compare with every admin key (no early exit), so timing says nothing about which matched.
        matches = [hmac.compare_digest(token.encode(), key) for key in self.admin_keys]
        if any(matches):
            return self._admin(matches.index(True))
        if not token.startswith("llmos-"):
            return None
        return self.keys.authenticate(token).principal()

    # --- how much ------------------------------------------------------------------------------
    def admit(self, model: str, prompt_tokens: int, max_completion_tokens: int) -> None:
        """Reserve a request's worst case against the current key's limits and budget; raises
        RateLimited / BudgetExceeded (429). The middleware settles it when the response is done."""
        principal = current_principal()
        if principal.key_id is None or principal.is_admin_key:
            return
        held = _reservation.get()
        try:
            reservation = self.limiter.admit(
                principal.key_id,
                model,
                limits=principal.limits,
                model_limits=_model_limits(principal, model),
                budget=principal.budget,
                prompt_tokens=prompt_tokens,
                max_completion_tokens=max_completion_tokens,
            )
        except RateLimited as exc:
            self.metrics.rate_limited.labels(exc.reason).inc()
            raise
        if held is not None:
            held.append(reservation)
        else:  # outside the middleware (a test driving serving directly): settle at once
            reservation.settle(prompt_tokens, 0)

    def rate_headers(self) -> dict[str, str]:
        held = _reservation.get()
        return dict(held[-1].headers) if held else {}

    def settle(self, record: RequestRecord, reservations: list[Reservation]) -> None:
        """Replace the request's reservations with what it used (the first carries the counts)."""
        for i, reservation in enumerate(reservations):
            if i == 0:
                reservation.settle(record.prompt_tokens, record.completion_tokens)
            else:
                reservation.settle(0, 0)

    def account(self, record: RequestRecord) -> None:
        """Hand the finished request's usage row to the writer."""
        self.writer.submit(row_of(record))

    def record_action(self, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        """Add ``action`` on ``target`` to the audit log, by the current request's key and with its
        request id; a failure to record is logged, never raised into the action."""
        record = current_request()
        try:
            self.audit.record(
                current_principal().key_id or "open",
                action,
                target,
                details,
                None if record is None else record.request_id,
            )
        except Exception:
            logger.exception("could not audit %s %s", action, target)

    def _budget_event(self, key_id: str, kind: str, used: int, tokens: int) -> None:
        self.metrics.budget_events.labels(kind).inc()
        logger.warning("budget %s threshold: key %s has used %d of %d tokens", kind, key_id, used, tokens)
        record = current_request()
        try:
            self.audit.record(
                "llmos",
                f"budget.{kind}",
                key_id,
                {"used": used, "tokens": tokens},
                None if record is None else record.request_id,
            )
        except Exception:  # an event must never fail the request it was noticed in
            logger.exception("could not record the budget event")

    async def expire_usage(self) -> int:
        """Drop usage rows older than ``LLMOS_USAGE_RETENTION_DAYS`` (whole days; rollups stay)."""
        days = self.settings.usage_retention_days
        if days <= 0:
            return 0
        from datetime import UTC, datetime, timedelta

        cutoff = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")
        return await asyncio.to_thread(self.usage.drop_before, cutoff)


def _model_limits(principal: Principal, model: str) -> Any:
    limits = principal.model_limits
    if not limits:
        return None
    if model in limits:
        return limits[model]
    base = model.split("+")[0].split("@")[0].split(":")[0]
    return limits.get(base)


def begin(principal: Principal) -> tuple[Any, Any, list[Reservation]]:
    """Make ``principal`` current for this request and open its reservation list (middleware)."""
    held: list[Reservation] = []
    return _principal.set(principal), _reservation.set(held), held


def end(tokens: tuple[Any, Any, list[Reservation]]) -> None:
    _principal.reset(tokens[0])
    _reservation.reset(tokens[1])


def audit(request: Any, action: str, target: str, details: dict[str, Any] | None = None) -> None:
    """Record an administrative action done over HTTP, by the request's key (runs in a worker
    thread or the loop; never fails the action it records)."""
    control: AccessControl | None = getattr(request.app.state, "access", None)
    if control is not None:
        control.record_action(action, target, details)
