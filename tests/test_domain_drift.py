"""Counts that moved between the request and the start, against the target's threshold."""

from __future__ import annotations

import pytest

from bot.domain.drift import Drift, count_drift, drift_notice


@pytest.mark.parametrize(
    ("before", "after", "percent", "moved"),
    [
        ({"move": 400}, {"move": 800}, 10, [Drift("move", 400, 800)]),
        ({"move": 400}, {"move": 440}, 10, []),  # exactly the threshold: not more
        ({"move": 400}, {"move": 441}, 10, [Drift("move", 400, 441)]),
        ({"move": 400}, {"move": 300}, 10, [Drift("move", 400, 300)]),  # fewer rows too
        ({"move": 400}, {"move": 800}, 150, []),  # a target with a looser threshold
        ({"move": 0}, {"move": 3}, 10, [Drift("move", 0, 3)]),
        ({"move": 0}, {"move": 0}, 0, []),
        ({}, {"move": 800}, 10, []),  # not counted at the request: nothing to compare
        (
            {"journal": 400, "move": 400},
            {"journal": 400, "move": 800},
            10,
            [Drift("move", 400, 800)],
        ),
    ],
)
def test_count_drift(
    before: dict[str, int], after: dict[str, int], percent: float, moved: list[Drift]
) -> None:
    assert count_drift(before, after, percent) == moved


def test_the_notice_shows_old_and_new_counts_and_what_happens() -> None:
    drifts = [Drift("move", 400, 800), Drift("journal", 0, 5)]
    held = drift_notice(12, drifts, 10, held=True)
    assert held.startswith(
        "#12: the rows it touches moved by more than 10% since it was requested: "
        "move: 400 → 800 rows (+100%); journal: 0 → 5 rows (new)."
    )
    assert "fresh approval" in held and "no longer count" in held
    assert "starts with the new counts" in drift_notice(12, drifts, 10, held=False)
