"""Adaptive batch sizing (pure)."""

from __future__ import annotations

import pytest

from bot.domain.batching import BatchSettings, next_size

S = BatchSettings(size=1000, min=100, max=50_000, budget_ms=200)


@pytest.mark.parametrize(
    ("current", "elapsed", "expected"),
    [
        (1000, 0.050, 1800),  # far under budget: grows, at most doubling (damped by 0.9)
        (1000, 0.150, 1200),  # a little under: grows in proportion
        (1000, 0.200, 1000),  # on budget: stays
        (1000, 0.400, 500),  # twice over: halves
        (1000, 4.000, 500),  # far over: halves, no more
        (40_000, 0.010, 50_000),  # clamped to max
        (150, 2.0, 100),  # clamped to min
        (1000, 0.0, 1800),  # too fast to measure: grows
    ],
)
def test_next_size_aims_at_the_budget(current: int, elapsed: float, expected: int) -> None:
    """Batches grow when fast and shrink when slow, within bounds."""
    assert next_size(current, elapsed, S) == expected


def test_settings_must_be_ordered() -> None:
    """min <= size <= max, or a clear error."""
    with pytest.raises(ValueError, match="min <= size <= max"):
        BatchSettings(size=10, min=100, max=1000)


def test_sizes_converge_for_a_steady_rate() -> None:
    """At 100k rows/s and a 200 ms budget, sizes settle near 20k rows."""
    size = S.size
    for _ in range(20):
        size = next_size(size, size / 100_000, S)
    assert 17_000 <= size <= 20_000
