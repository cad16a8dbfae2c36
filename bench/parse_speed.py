"""How the ``/migrate`` tokenizer's time grows with the text: ``handlers.parse.split`` (the bot's
one-pass tokenizer) and ``shlex.split`` (what it replaced) on 1k, 10k and 100k characters of
two shapes of text, past the 4,000 characters ``parse`` accepts: ``one_word`` (a single quoted
value full of escaped quotes, where shlex's time grows faster than the text) and ``many_words``
(short quoted and escaped parameters). Prints JSON: the best of ``--repeat`` runs in ms per
size and microseconds per 1,000 characters; linear growth shows as a flat ``us_per_1k_chars``.
Runs in a few seconds; needs no database.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from collections.abc import Callable

from bench._common import emit, machine
from handlers.parse import split

SIZES = (1_000, 10_000, 100_000)
SHAPES = {
    "one_word": ('plan r note="', 'a\\"', '"'),
    "many_words": ("plan r ", 'n="a\\"b" x=\'q r\' p=a\\ b ', "on=staging"),
}


def text_of(shape: str, size: int) -> str:
    """About ``size`` characters of ``shape``: its head, its unit repeated, its tail."""
    head, unit, tail = SHAPES[shape]
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def _best_ms(split_words: Callable[[str], list[str]], text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        split_words(text)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    figures: dict[str, object] = {"machine": machine(load)}
    for name, func in (("split", split), ("shlex", shlex.split)):
        for shape in SHAPES:
            rows = []
            for size in SIZES:
                text = text_of(shape, size)
                ms = _best_ms(func, text, args.repeat)
                per_1k = round(ms * 1000 / (len(text) / 1000), 1)
                rows.append({"chars": len(text), "ms": round(ms, 2), "us_per_1k_chars": per_1k})
            figures[f"{name}_{shape}"] = rows
    emit(figures)


if __name__ == "__main__":
    main()
