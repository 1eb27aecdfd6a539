"""Selections the walk keeps as it goes: the best k by a key (:class:`TopK`, which also tightens the
walk's constraints to what can still enter), the Pareto front (:class:`Front`), and the check of which
selection options go together. Exact selections on spaces of stages (rfsweep.engine.stage_select) order
their rows with the same classes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine import objectives
from rfsweep.engine.run import Batch
from rfsweep.engine.sample import check_sample
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space, ids
from rfsweep.space.packing import add_floors


def _sort_key(out: np.ndarray, space: Space, sort: str, choice: np.ndarray | None = None) -> np.ndarray:
    if choice is None and sort == "latency_ms" and space.latency is not None:
        choice = np.zeros((max(1, space.depth_max), out.shape[1]), np.int16)  # only empty probes come here
    return objectives.key(objectives.survivor_columns(out, space, choice), sort, objectives.rf_target2(space))


class TopK:
    """The best ``k`` rows by a sort key (ties: smaller arch_id), holding at most k + one batch.

    Once it holds k rows, :meth:`tighten` turns the k-th key into a bound the kernels prune with
    (params and MACs only grow along a prefix, and the rf window narrows around the target), so the
    rest of the walk skips every subtree that cannot enter the top k.
    """

    def __init__(self, k: int, space: Space, sort: str):
        _sort_key(np.zeros((space.out_width, 0), np.int64), space, sort)  # refuse an unknown key early
        self.k, self.space, self.sort = k, space, sort
        self.best: Batch | None = None
        self.bound: int | None = None  # a key the k-th best cannot be worse than (seed)
        self.floored = False  # cost floors put into the run's constraints (rfsweep.space.packing.add_floors)

    def add(self, batch: Batch) -> None:
        batch = Batch.concat([self.best, batch]) if self.best is not None else batch.copy()
        key = _sort_key(batch.out, self.space, self.sort, batch.choice)
        order = np.lexsort((*ids.order_keys(batch.out, batch.choice, self.space), key))[: self.k]
        self.best = batch.take(order)

    def seed(self, batches: Iterator[Batch]) -> None:
        """Take a first bound from any k survivors (e.g. the walk's first k, which a --limit without a sort
        finds cheaply): the k-th best key can only be better, so the walk prunes from its first chunk on
        instead of walking that chunk whole. The rows are not kept: the walk finds them again."""
        probe = TopK(self.k, self.space, self.sort)
        for batch in batches:
            probe.add(batch)
        if probe.best is not None and len(probe.best) == self.k:
            self.bound = int(_sort_key(probe.best.out[:, -1:], self.space, self.sort, probe.best.choice[:, -1:])[0])

    def tighten(self, cons: np.ndarray) -> None:
        """Narrow the run's constraints to what can still enter the top k (called between chunks, so every
        candidate still to come is later in depth-first order than the rows held)."""
        if self.sort in ("erf", "latency_ms"):
            return  # the ERF only grows along a prefix; the kernels do not see latency: nothing to prune by
        if self.best is None or len(self.best) < self.k:
            if self.bound is not None:
                self._narrow(cons, self.bound)
            return
        worst = int(_sort_key(self.best.out[:, -1:], self.space, self.sort)[0])
        if int(self.best.out[lm.O_DEPTH, -1]) == self.space.depth_min:
            # the rest of the walk comes later in depth-first order, at a depth no smaller than the k-th
            # row's: a tie there has the larger arch_id and cannot enter, so only a better key can (a run
            # whose best rows tie by the million, e.g. params with strides free, no longer walks the ties)
            worst -= 1
        self._narrow(cons, worst)

    def _narrow(self, cons: np.ndarray, worst: int) -> None:
        """Keep only candidates whose key is at most ``worst``."""
        if self.sort in ("params", "macs") and not self.floored:  # a budget, pruned with the least cost left
            add_floors(self.space, cons)
            self.floored = True
        if self.sort == "params":
            cons[lm.C_MAX_PARAMS] = min(cons[lm.C_MAX_PARAMS], worst)
        elif self.sort == "macs":
            cons[lm.C_MAX_MACS] = min(cons[lm.C_MAX_MACS], worst)
        elif self.sort == "peak_act":  # the peak only grows along a prefix, as params and MACs do
            cons[lm.C_MAX_PEAK] = min(cons[lm.C_MAX_PEAK], worst)
        elif self.sort == "rf_error":  # |2 rf - t2| <= worst
            t2 = objectives.rf_target2(self.space)
            cons[lm.C_RF_MIN] = max(cons[lm.C_RF_MIN], -((worst - t2) // 2))
            cons[lm.C_RF_MAX] = min(cons[lm.C_RF_MAX], (t2 + worst) // 2)

    def result(self) -> Batch:
        return Batch.empty(self.space) if self.best is None else self.best


def check_selection(
    limit: int | None,
    sort: str | None,
    pareto: tuple[str, ...] | None = None,
    sample: int | None = None,
    where: str | None = None,
    seed: int | None = None,
) -> None:
    """Refuse what cannot be combined, one line naming the field."""
    if sort is not None and limit is None:
        raise field_error("sort", sort, "needs --limit (sorting every survivor would hold them all in memory)")
    if sort is not None and sort not in objectives.SORT_KEYS:
        raise field_error("sort", sort, f"must be one of {', '.join(objectives.SORT_KEYS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise field_error("limit", limit, "must be an integer >= 1")
    if pareto is not None and (limit is not None or sample is not None):
        raise field_error("pareto", ",".join(pareto), "keeps the whole front: not with --limit, --sort or --sample")
    if sample is not None:
        check_sample(sample, seed)
        if limit is not None:
            raise field_error("sample", sample, "draws N survivors itself: not with --limit or --sort")
        if where is not None:
            raise field_error(
                "sample",
                sample,
                "draws from the walk's exact counts, which --where (applied after) would bias; "
                "use the budget flags (--max-params, ...) to constrain the survivors",
            )
    elif seed is not None:
        raise field_error("seed", seed, "seeds --sample; give --sample N")


class Front:
    """The Pareto front of the survivors seen so far (rows no other row beats on every objective), holding
    only the front and one batch."""

    def __init__(self, space: Space, names: tuple[str, ...]):
        if "latency_ms" in names and getattr(space, "latency", None) is None:  # before the walk starts
            raise field_error("pareto", ",".join(names), "latency_ms needs a latency table (--latency-lut FILE, a "
                              "space of stages)")  # fmt: skip
        self.space, self.names = space, names
        self.best: Batch | None = None

    def add(self, batch: Batch) -> None:
        if len(batch) == 0:
            return
        if self.best is not None:
            batch = Batch.concat([self.best, batch])
        cols = objectives.survivor_columns(batch.out, self.space, batch.choice)
        t2 = objectives.rf_target2(self.space)
        keep = objectives.front_mask([objectives.key(cols, name, t2) for name in self.names])
        self.best = batch.take(keep)

    def result(self) -> Batch:
        """The front, ordered by the objectives in turn, ties by arch_id."""
        if self.best is None:
            return Batch.empty(self.space)
        cols = objectives.survivor_columns(self.best.out, self.space, self.best.choice)
        t2 = objectives.rf_target2(self.space)
        keys = [objectives.key(cols, name, t2) for name in self.names]
        order = np.lexsort([*ids.order_keys(self.best.out, self.best.choice, self.space), *reversed(keys)])
        return self.best.take(order)
