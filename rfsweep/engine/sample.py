"""Uniform samples of the survivors, exactly uniform and without replacement, without writing the others.

The engine counts the survivors of every first-cut task (:class:`rfsweep.engine.run.CountedPlan`); ranks
are drawn here, and only the tasks holding a drawn rank are walked further (split and counted until
small, then filled). NAS pipelines that sample constrained spaces (Once-for-All, FBNet) by rejection
get the same distribution from one count pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rfsweep.core.errors import field_error

CHUNK = 1 << 20  # ranks are drawn a chunk of the rank range at a time: memory stays bounded
HG_LIMIT = 10**9  # numpy's hypergeometric needs populations below this
DEDUP_MAX = 10**7  # beyond HG_LIMIT survivors, samples up to this size are drawn by rejection of repeats


def check_dedup(n: int, total: int) -> None:
    """Refuse a sample too large to draw by rejecting repeats (from more than 10^9 survivors)."""
    if n > DEDUP_MAX:
        raise field_error(
            "sample",
            n,
            f"at most {DEDUP_MAX:,} from {total:,} survivors (over 10^9); write them and sample while reading",
        )


def draw_ranks(total: int, n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Sorted chunks of ``min(n, total)`` distinct ranks drawn uniformly from [0, total).

    Each subset of that size is equally likely. Below 10^9 survivors the rank range is cut into chunks
    and the number of ranks in each is drawn from the hypergeometric law of what is left (an exact
    sequential decomposition of sampling without replacement), then that many distinct ranks within the
    chunk; above it, ranks are drawn independently and repeats discarded, keeping the first ``n``
    distinct ones in the order drawn (a uniform subset by symmetry).
    """
    if n >= total:
        for start in range(0, total, CHUNK):
            yield np.arange(start, min(total, start + CHUNK), dtype=np.int64)
        return
    if total < HG_LIMIT:
        left, want = total, n
        for start in range(0, total, CHUNK):
            size = min(CHUNK, total - start)
            k = int(rng.hypergeometric(size, left - size, want)) if want and left > size else want
            if k:
                yield np.sort(rng.choice(size, size=k, replace=False)).astype(np.int64) + start
            left -= size
            want -= k
        return
    check_dedup(n, total)
    drawn = np.zeros(0, np.int64)
    while True:
        more = rng.integers(0, total, size=max(2 * (n - len(np.unique(drawn))), 64), dtype=np.int64)
        drawn = np.concatenate([drawn, more])
        uniq, first = np.unique(drawn, return_index=True)
        if len(uniq) >= n:
            break
    yield np.sort(uniq[np.argsort(first)[:n]])  # the first n distinct values in the order drawn


def check_sample(n, seed) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise field_error("sample", n, "must be an integer >= 1")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise field_error("seed", seed, "must be an integer in 0..2^63-1")


__all__ = ["check_sample", "draw_ranks"]
