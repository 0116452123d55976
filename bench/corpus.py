"""Benchmark texts: the Harvard sentences (public domain), combined into a seeded mix of short and long texts."""

from __future__ import annotations

import random
from pathlib import Path

CORPUS = Path(__file__).with_name("harvard.txt")


def sentences() -> list[str]:
    return [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def mixed_texts(count: int, seed: int = 7) -> list[str]:
    """Mostly one sentence, sometimes two to four: a heavy tail, as real TTS traffic has."""
    rng = random.Random(seed)
    pool = sentences()
    out = []
    for _ in range(count):
        n = rng.choices([1, 2, 4], weights=[6, 3, 1])[0]
        out.append(" ".join(rng.sample(pool, n)))
    return out
