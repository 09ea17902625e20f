"""Rate limits and budgets (llmos.access.limits), driven by a fake clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmos.access.limits import Budget, Limits, RateLimiter, Reservation, format_reset
from llmos.errors import BudgetExceeded, InvalidRequest, RateLimited

JAN_31_2359 = datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC).timestamp()  # a Saturday, on a minute start


class Clock:
    """A mutable fake ``time.time``."""

    def __init__(self, now: float = JAN_31_2359) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def admit(
    limiter: RateLimiter,
    limits: Limits | None = None,
    *,
    key_id: str = "k1",
    model: str = "m",
    model_limits: Limits | None = None,
    budget: Budget | None = None,
    prompt: int = 10,
    completion: int = 100,
) -> Reservation:
    return limiter.admit(
        key_id,
        model,
        limits=limits,
        model_limits=model_limits,
        budget=budget,
        prompt_tokens=prompt,
        max_completion_tokens=completion,
    )


def test_request_after_rpm_limit_is_refused_with_headers_and_retry_after(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limits = Limits(rpm=2, tpm=1000)
    first = admit(limiter, limits)
    assert first.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "890",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    clock.now += 15.5
    admit(limiter, limits).settle(10, 0)  # a failed request: settled, still counted
    with pytest.raises(RateLimited) as caught:
        admit(limiter, limits)
    error = caught.value
    assert error.status_code == 429 and error.reason == "rpm"
    assert error.retry_after == 45  # ceil(44.5)
    assert "rpm=2" in error.message and "retry after 45 s" in error.message
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "44.5s"
    clock.now += 44.5  # the next minute window
    assert admit(limiter, limits).headers["x-ratelimit-remaining-requests"] == "1"


def test_refused_admission_counts_and_reserves_nothing(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limits = Limits(rpm=10, tpm=300)
    key_wide = Limits(rpm=10)
    admit(limiter, key_wide, model_limits=limits, completion=250)
    with pytest.raises(RateLimited) as caught:
        admit(limiter, key_wide, model_limits=limits, completion=100)
    assert caught.value.reason == "tpm" and "lower max_tokens" in caught.value.message
    ok = admit(limiter, key_wide, model_limits=limits, completion=30)  # the refusal left no trace
    assert ok.headers["x-ratelimit-remaining-requests"] == "8"
    assert ok.headers["x-ratelimit-remaining-tokens"] == "0"


def test_burst_of_concurrent_admissions_never_overshoots_tpm_and_refunds_let_more_in(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limits = Limits(completion_tpm=500)
    barrier = threading.Barrier(20)
    admitted: list[Reservation] = []
    refused: list[RateLimited] = []

    def one() -> None:
        barrier.wait()
        try:
            admitted.append(admit(limiter, limits, prompt=10, completion=100))
        except RateLimited as error:
            refused.append(error)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 5 and len(refused) == 15
    assert {error.reason for error in refused} == {"completion_tpm"}
    for reservation in admitted:
        reservation.settle(10, 20)  # 80 of each 100 reserved come back
    more = [admit(limiter, limits, prompt=10, completion=100) for _ in range(4)]
    assert more[-1].headers["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(RateLimited):
        admit(limiter, limits, prompt=10, completion=100)


def test_reservation_larger_than_the_limit_can_never_fit(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    with pytest.raises(RateLimited) as caught:
        admit(limiter, Limits(tpm=1000), prompt=100, completion=2000)
    assert caught.value.reason == "tpm"
    assert "never fit" in caught.value.message and "lower max_tokens" in caught.value.message
    assert caught.value.retry_after == 60


def test_per_model_limits_are_independent_of_other_models(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    per_model = Limits(rpm=1)
    admit(limiter, model="a", model_limits=per_model)
    with pytest.raises(RateLimited):
        admit(limiter, model="a", model_limits=per_model)
    admit(limiter, model="b", model_limits=per_model)
    admit(limiter, key_id="k2", model="a", model_limits=per_model)  # and of other keys


def test_key_limits_count_over_all_models(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    admit(limiter, Limits(rpm=2), model="a")
    admit(limiter, Limits(rpm=2), model="b")
    with pytest.raises(RateLimited) as caught:
        admit(limiter, Limits(rpm=2), model="c", model_limits=Limits(rpm=5))
    assert "key k1:" in caught.value.message


def test_max_parallel_is_released_by_settle_even_on_failure(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limits = Limits(max_parallel=2)
    first, second = admit(limiter, limits), admit(limiter, limits)
    with pytest.raises(RateLimited) as caught:
        admit(limiter, limits)
    assert caught.value.reason == "max_parallel" and caught.value.retry_after == 1
    first.settle(10, 100)
    third = admit(limiter, limits)
    second.settle(0, 0)  # the engine failed it before a token
    third.settle(10, 3)
    admit(limiter, limits), admit(limiter, limits)


def test_settle_is_idempotent(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limits = Limits(tpm=200, max_parallel=1)
    budget = Budget(10_000, "day")
    reservation = admit(limiter, limits, budget=budget, prompt=10, completion=100)
    reservation.settle(10, 40)
    reservation.settle(10, 40)
    assert reservation.is_settled
    assert limiter.budget_remaining() == {"k1": 10_000 - 50}
    again = admit(limiter, limits, prompt=10, completion=100)  # one slot, freed once
    assert again.headers["x-ratelimit-remaining-tokens"] == str(200 - 50 - 110)


def test_actual_use_above_the_reservation_is_counted(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    admit(limiter, Limits(tpm=300), prompt=10, completion=100).settle(25, 100)
    assert (
        admit(limiter, Limits(tpm=300), prompt=0, completion=1).headers["x-ratelimit-remaining-tokens"]
        == "174"
    )


def test_refund_after_the_window_rolled_over_goes_to_the_old_window(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limits = Limits(tpm=200)
    reservation = admit(limiter, limits, prompt=0, completion=150)
    clock.now += 60
    fresh = admit(limiter, limits, prompt=0, completion=150)
    reservation.settle(0, 0)
    with pytest.raises(RateLimited):
        admit(limiter, limits, prompt=0, completion=100)  # the new minute got no refund
    fresh.settle(0, 0)
    admit(limiter, limits, prompt=0, completion=200)


def test_rpd_window_resets_at_utc_midnight(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    clock.now += 30
    admit(limiter, Limits(rpd=1))
    with pytest.raises(RateLimited) as caught:
        admit(limiter, Limits(rpd=1))
    assert caught.value.reason == "rpd" and caught.value.retry_after == 30
    assert caught.value.headers["x-ratelimit-reset-requests"] == "30s"
    clock.now += 30  # 2026-02-01 00:00 UTC
    admit(limiter, Limits(rpd=1))


def test_budget_is_seeded_per_period_and_resets_at_month_end(clock: Clock) -> None:
    seeded: list[tuple[str, datetime]] = []

    def budget_used(key_id: str, start: datetime) -> int:
        seeded.append((key_id, start))
        return 900 if start.month == 1 else 50

    limiter = RateLimiter(clock=clock, budget_used=budget_used)
    budget = Budget.parse("1000/month")
    admit(limiter, budget=budget, prompt=10, completion=40).settle(10, 40)
    with pytest.raises(BudgetExceeded) as caught:
        admit(limiter, budget=budget, prompt=10, completion=100)
    error = caught.value
    assert error.reason == "budget" and error.status_code == 429 and error.code == "insufficient_quota"
    assert error.retry_after == 60 and "50 tokens left" in error.message
    assert limiter.budget_remaining() == {"k1": 50}
    clock.now += 60  # February
    assert limiter.budget_remaining() == {"k1": 950}
    admit(limiter, budget=budget, prompt=10, completion=100)
    assert limiter.budget_remaining() == {"k1": 840}
    assert seeded == [("k1", datetime(2026, 1, 1, tzinfo=UTC)), ("k1", datetime(2026, 2, 1, tzinfo=UTC))]


def test_soft_event_fires_once_and_hard_event_on_refusal(clock: Clock) -> None:
    events: list[tuple[str, str, int, int]] = []
    limiter = RateLimiter(clock=clock, on_budget_event=lambda *event: events.append(event))
    budget = Budget(1000, "week", soft=0.5)
    admit(limiter, budget=budget, prompt=100, completion=300).settle(100, 300)
    assert events == []
    admit(limiter, budget=budget, prompt=100, completion=300).settle(100, 100)
    admit(limiter, budget=budget, prompt=100, completion=100).settle(100, 100)
    assert events == [("k1", "soft", 600, 1000)]
    for _ in range(2):
        with pytest.raises(BudgetExceeded):
            admit(limiter, budget=budget, prompt=100, completion=300)
    assert events == [("k1", "soft", 600, 1000), ("k1", "hard", 800, 1000)]


def test_budget_counts_reservations_in_flight(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    budget = Budget(500, "day")
    admit(limiter, budget=budget, prompt=100, completion=300)
    assert limiter.budget_remaining() == {"k1": 100}
    with pytest.raises(BudgetExceeded) as caught:
        admit(limiter, budget=budget, prompt=10, completion=100)
    assert caught.value.retry_after == 60  # to midnight UTC
    with pytest.raises(BudgetExceeded) as never:
        admit(limiter, key_id="k2", budget=budget, prompt=10, completion=600)
    assert "never fit" in never.value.message


def test_forget_drops_a_keys_state(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    admit(limiter, Limits(rpm=1), budget=Budget(100, "day"), completion=10)
    limiter.forget("k1")
    assert limiter.budget_remaining() == {}
    admit(limiter, Limits(rpm=1))


def test_old_windows_are_dropped(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(100):
        admit(limiter, Limits(rpm=1), model_limits=Limits(rpm=1)).settle(1, 1)
        clock.now += 60
    scopes = limiter._scopes["k1"]
    assert set(scopes) == {None, "m"}


def test_no_limits_means_no_headers(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    assert admit(limiter, Limits(), model_limits=None).headers == {}
    assert admit(limiter, Limits(max_parallel=3)).headers == {}
    assert set(admit(limiter, Limits(rpm=3)).headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }


def test_headers_show_the_tightest_window(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    clock.now -= 3600  # 22:59 UTC
    headers = admit(limiter, Limits(rpm=100, rpd=5), model_limits=Limits(tpm=500, tpd=10_000)).headers
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert headers["x-ratelimit-reset-requests"] == "1h1m0s"
    assert headers["x-ratelimit-limit-tokens"] == "500"
    assert headers["x-ratelimit-remaining-tokens"] == "390"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.02, "20ms"),
        (0, "0ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (360, "6m0s"),
        (7384, "2h3m4s"),
        (59.9999, "1m0s"),
    ],
)
def test_reset_is_formatted_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_limits_parse_and_round_trip() -> None:
    limits = Limits.parse("rpm=60, tpm=20_000,max_parallel=4,tpd=1e6")
    assert limits == Limits(rpm=60, tpm=20000, max_parallel=4, tpd=1_000_000)
    assert limits.to_dict() == {"rpm": 60, "tpm": 20000, "tpd": 1_000_000, "max_parallel": 4}
    assert Limits.from_dict(limits.to_dict()) == limits
    assert Limits.parse("").is_empty and not limits.is_empty


@pytest.mark.parametrize(
    ("text", "names"),
    [("rpx=60", "rpx"), ("rpm", "rpm"), ("rpm=-1", "rpm"), ("tpm=lots", "tpm"), ("rpm=1,rpm=2", "rpm")],
)
def test_limits_parse_errors_name_the_field(text: str, names: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Limits.parse(text)
    assert names in caught.value.message and caught.value.param == "limits"
    if text == "rpx=60":
        assert "prompt_tpm" in caught.value.message and "max_parallel" in caught.value.message


def test_limits_from_dict_refuses_unknown_names() -> None:
    with pytest.raises(InvalidRequest, match="rpw"):
        Limits.from_dict({"rpw": 3})


def test_budget_parse_and_round_trip() -> None:
    assert Budget.parse("1000000/month") == Budget(1_000_000, "month")
    assert Budget.parse("1e6/week") == Budget(1_000_000, "week")
    assert Budget.parse("50000/day,soft=0.9") == Budget(50_000, "day", soft=0.9)
    budget = Budget(5, "week", 0.5)
    assert Budget.from_dict(budget.to_dict()) == budget
    for bad in ("1000", "1000/year", "lots/day", "10/day,hard=1", "10/day,soft=2"):
        with pytest.raises(InvalidRequest):
            Budget.parse(bad)


def test_budget_periods_are_calendar_aligned_in_utc() -> None:
    now = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)  # a Thursday
    assert Budget(1, "day").period_bounds(now) == (
        datetime(2026, 12, 31, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert Budget(1, "week").period_bounds(now) == (
        datetime(2026, 12, 28, tzinfo=UTC),
        datetime(2027, 1, 4, tzinfo=UTC),
    )
    assert Budget(1, "month").period_bounds(now) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert Budget(1, "month").period_bounds(datetime(2026, 2, 10))[1] == datetime(2026, 3, 1, tzinfo=UTC)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from(["a", "b"]), st.integers(0, 300), st.integers(0, 300)),
        st.tuples(st.just("settle"), st.integers(0, 50), st.floats(0, 1), st.floats(0, 1)),
        st.tuples(st.just("tick"), st.floats(0, 40), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_counted_tokens_in_a_window_never_exceed_the_limit(ops: list[tuple]) -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    key_limits = Limits(tpm=1000, prompt_tpm=600)
    model_limits = Limits(tpm=700, completion_tpm=500)
    held: list[tuple[int, Reservation, list[int]]] = []  # minute, reservation, counted [prompt, completion]
    for op, a, b, c in ops:
        if op == "admit":
            try:
                reservation = admit(
                    limiter, key_limits, model=a, model_limits=model_limits, prompt=b, completion=c
                )
            except RateLimited:
                continue
            held.append((int(clock.now // 60), reservation, [b, c]))
        elif op == "settle" and held:
            _, reservation, counted = held[a % len(held)]
            if not reservation.is_settled:
                counted[:] = [int(counted[0] * b), int(counted[1] * c)]
                reservation.settle(*counted)
        elif op == "tick":
            clock.now += a
        for minute in {m for m, _, _ in held}:
            in_minute = [(r.model, counted) for m, r, counted in held if m == minute]
            assert sum(p + c for _, (p, c) in in_minute) <= key_limits.tpm
            assert sum(p for _, (p, _) in in_minute) <= key_limits.prompt_tpm
            for model in ("a", "b"):
                assert sum(p + c for m, (p, c) in in_minute if m == model) <= model_limits.tpm
                assert sum(c for m, (_, c) in in_minute if m == model) <= model_limits.completion_tpm
