"""`until_deadline`, the one retry loop under PostgreSQL's `retrying`, the pool's start-up wait
and JetStream's `while_transient`."""

from __future__ import annotations

import pytest

from tradepulse.common.retry import until_deadline


class Flaky:
    """Raises `error` `failures` times, then answers "served"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "served"


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr("asyncio.sleep", sleep)
    return delays


async def test_waits_twice_as_long_each_time_up_to_the_cap(slept: list[float]) -> None:
    seen: list[tuple[str, int]] = []
    op = Flaky(6, TimeoutError("busy"))
    answer = await until_deadline(
        op, (TimeoutError,), within=60, on_retry=lambda exc, n: seen.append((str(exc), n))
    )
    assert answer == "served"
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert seen == [("busy", n) for n in range(6)]


async def test_a_fixed_pace_when_first_is_the_cap(slept: list[float]) -> None:
    assert await until_deadline(Flaky(3, OSError()), (OSError,), within=60, first=0.5, cap=0.5)
    assert slept == [0.5, 0.5, 0.5]


async def test_past_the_deadline_the_last_error_is_raised(slept: list[float]) -> None:
    op = Flaky(1, TimeoutError("still busy"))
    with pytest.raises(TimeoutError, match="still busy"):
        await until_deadline(op, (TimeoutError,), within=0)
    assert (op.calls, slept) == (1, [])


async def test_an_error_not_listed_is_not_retried(slept: list[float]) -> None:
    op = Flaky(1, ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        await until_deadline(op, (TimeoutError,), within=60)
    assert (op.calls, slept) == (1, [])
