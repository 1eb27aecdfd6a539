"""Plans the work, runs the kernels, streams survivor batches in depth-first order.

The tree of candidates is cut into tasks (prefixes); a count pass gives each task's number of
survivors; tasks with more than a slab's worth are split into their children; consecutive tasks are
grouped into slabs of at most ``slab_rows`` rows, and a fill pass writes each slab. Memory is bounded
by the slab, however many candidates survive, and the rows come out in the same order whatever the
number of threads or the device.

Every kernel call runs through :func:`rfsweep.engine.steer.call`: a signal stops it within a few thousand
nodes, and a ``progress`` callback sees a :class:`Progress` snapshot several times a second.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine import dp, steer
from rfsweep.engine.threads import run_spread
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space
from rfsweep.space.settings import INT_LIMIT

log = logging.getLogger("rfsweep")

SLAB_ROWS = 1 << 20  # ~1M rows a slab; the sink cuts it into row groups of 512K (output.writer.ROW_GROUP_ROWS)
CHUNK_TASKS = 1 << 16  # first-cut tasks per count pass
TASKS_PER_THREAD = 512  # first-cut tasks wanted per thread, for balance
MAX_FIRST_TASKS = 1 << 20  # ... but no more than this (their counts are kept for the whole run)


@dataclass
class Batch:
    """Survivors in depth-first order, column-major: ``out[O_*, i]`` the metrics of survivor ``i``,
    ``choice[p, i]`` its choice index at position ``p`` (each field contiguous, as columns want it; past
    the row's depth, 0 or, in reused buffers, whatever an earlier row left there)."""

    out: np.ndarray
    choice: np.ndarray
    last: bool = False  # no batch follows (iter_batches with align marks its last)

    def __len__(self) -> int:
        return self.out.shape[1]

    def take(self, index) -> Batch:
        """The survivors at ``index`` (a slice, a boolean mask or integer positions), as a new batch."""
        return Batch(self.out[:, index], self.choice[:, index])

    def copy(self) -> Batch:
        return Batch(self.out.copy(), self.choice.copy())

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        return Batch(
            np.concatenate([b.out for b in batches], axis=1), np.concatenate([b.choice for b in batches], axis=1)
        )

    @staticmethod
    def empty(space: Space) -> Batch:
        return Batch(np.zeros((space.out_width, 0), np.int64), np.zeros((max(1, space.depth_max), 0), np.int16))


@dataclass
class Stats:
    """What a run did. Every candidate of the space is exactly one of: evaluated by the walk, pruned
    (in a subtree a bound cut before it was reached), or not walked (the run stopped early, at a
    ``--limit``). ``kept`` counts the survivors among the evaluated."""

    space_size: int = 0
    evaluated: int = 0
    covered: int = 0  # candidates in the subtrees walked to the end (evaluated + pruned)
    kept: int = 0
    tasks: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    stopped_early: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Candidates settled (evaluated or pruned) per second."""
        return self.covered / self.seconds if self.seconds > 0 else float("inf")

    @property
    def pruned(self) -> int:
        """Candidates never evaluated because a bound cut their prefix."""
        return self.covered - self.evaluated

    @property
    def not_walked(self) -> int:
        """Candidates the run never reached (it stopped early)."""
        return self.space_size - self.covered


@dataclass
class Progress:
    """A snapshot for progress reports: ``fraction`` of the work done (0..1), from exact candidate counts."""

    phase: str  # 'count' or 'fill'
    fraction: float
    covered: int
    space_size: int
    evaluated: int
    kept: int
    rows: int  # survivors handed out so far
    elapsed: float


def _backend(device: str):
    """The module with run_tasks for this device: kernels.cpu or kernels.cuda."""
    if device == "cpu":
        from rfsweep.kernels import cpu

        return cpu, "cpu"
    from rfsweep.engine import device as gpu

    return gpu.backend(device)


def kernels_cached(kernel=None) -> bool:
    """Whether a kernel's compiled code (default: the CPU walk's) is in numba's on-disk cache (False:
    the first call compiles)."""
    import os

    if kernel is None:
        from rfsweep.kernels import cpu

        kernel = cpu.run_tasks
    try:
        return os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:  # numba's cache internals moved: say nothing rather than guess
        return True


def check_threads(threads: int | None) -> None:
    import numba

    top = numba.config.NUMBA_NUM_THREADS
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= top):
        raise field_error("threads", threads, f"must be in 1..{top} (the cores numba may use)")


def task_depth(space: Space, threads: int) -> int:
    """Prefix length of the first cut: enough tasks to balance the threads, no deeper than needed."""
    want = max(64, threads * TASKS_PER_THREAD)
    q, n = 0, 1
    while q < space.depth_max and n < want:
        if q > 0 and n * space.radices[q] > MAX_FIRST_TASKS:
            break
        n *= space.radices[q]
        q += 1
    return q


def prefixes(space: Space, q: int, start: int, stop: int) -> np.ndarray:
    """Rows = prefixes of length q with mixed-radix index start..stop-1, padded to depth_max."""
    ids = np.arange(start, stop, dtype=np.int64)
    out = np.zeros((stop - start, max(1, space.depth_max)), np.int64)
    for p in range(q - 1, -1, -1):
        r = space.radices[p]
        out[:, p] = ids % r
        ids //= r
    return out


class Coverage:
    """How many candidates each first-cut task answers for (its subtree, and the ancestors it owns).

    A task's weight is ``small + big x below`` with ``below`` the candidates strictly under a body node at
    depth q (one Python int, possibly beyond int64) and ``small``, ``big`` int64 per task, so sums stay
    exact. Over all first-cut tasks the weights add up to the size of the space.
    """

    def __init__(self, space: Space, q: int):
        self.q = q
        roles = np.zeros((max(1, space.depth_max), max(space.radices)), np.int64)
        for p, rs in enumerate(space.roles):
            roles[p, : len(rs)] = rs
        self.roles = roles
        self.dmin = space.depth_min
        body = [sum(1 for r in rs if r & lm.ROLE_BODY) for rs in space.roles]
        head = [sum(1 for r in rs if r & lm.ROLE_HEAD) for rs in space.roles]
        self.below = sum(
            math.prod(body[q : d - 1]) * head[d - 1] for d in range(max(q + 1, space.depth_min), space.depth_max + 1)
        )
        self.space_size = space.size

    def weights(self, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = self.q
        n = len(tasks)
        if q == 0:  # one task: the whole tree
            return np.zeros(n, np.int64), np.ones(n, np.int64)
        r = self.roles[np.arange(q), tasks[:, :q]]
        body = (r & lm.ROLE_BODY) != 0
        head = (r & lm.ROLE_HEAD) != 0
        # ok[:, t]: every choice before position t may be followed
        ok = np.ones((n, q + 1), bool)
        ok[:, 1:] = np.logical_and.accumulate(body, axis=1)
        # zero[:, t]: the choices at positions t.. are all 0 (the task owns the ancestor of length t)
        zero = np.ones((n, q + 1), bool)
        zero[:, :q] = np.logical_and.accumulate((tasks[:, :q] == 0)[:, ::-1], axis=1)[:, ::-1]
        small = np.zeros(n, np.int64)
        for t in range(1, q + 1):  # a node of length t is a candidate the task answers for
            owned = zero[:, t] if t < q else np.ones(n, bool)
            small += (owned & ok[:, t - 1] & head[:, t - 1] & (t >= self.dmin)).astype(np.int64)
        big = (ok[:, q - 1] & body[:, q - 1]).astype(np.int64)
        return small, big

    def exact(self, small: np.ndarray, big: np.ndarray) -> int:
        return int(small.sum()) + int(big.sum()) * self.below


class _Runner:
    """Binds a space's kernel arrays to a backend's run_tasks, in the steerable kernel thread."""

    def __init__(self, space: Space, device: str, stats: Stats, threads: int | None, use_table: bool = True):
        check_threads(threads)
        self.space = space
        self.stats = stats
        self.threads = threads
        self.backend, stats.device = _backend(device)
        # a private copy of the constraints: a top-N search narrows them between chunks
        self.K = space.kernel._replace(cons=space.kernel.cons.copy())
        # count passes look survivors up in the counting programme's table when the constraints allow:
        # on R7 [223, 225] it replaces a 0.46 s walk of the whole tree (measured, 2 cores)
        self.use_table = use_table
        self._table_key = None
        self._table = None
        self.walked = True
        self.dummy_out = np.zeros((space.out_width, 1), np.int64)
        self.dummy_ch = np.zeros((max(1, space.depth_max), 1), np.int16)
        self.no_table = (np.zeros(1, np.int64), 0, np.zeros((1, 1, 1, 1), np.int64))  # modes 0 and 1

    def run(self, mode, tasks, plens, rows0, out=None, out_ch=None, tick=None, table=None):
        """(survivors, candidates evaluated) per task; in mode 1 the rows too; mode 2 (CPU) looks the counts
        up in ``table``, a (jump values, rf cap, table) of :meth:`_suffix_table`."""
        n = len(tasks)
        counts = np.zeros(n, np.int64)
        evals = np.full(n, -1, np.int64)
        self.live = (counts, evals)
        args = (mode, tasks, plens, rows0, self.K, steer.control(), counts, evals)
        args += (self.dummy_out if out is None else out, self.dummy_ch if out_ch is None else out_ch)
        if self.stats.device == "cpu" or mode == 2:  # a one-thread kernel, spread over threads (engine.threads)
            import numba

            from rfsweep.kernels import cpu

            steer.note_compile(cpu.run_tasks)
            args += self.no_table if table is None else table
            n_threads = self.threads or numba.config.NUMBA_NUM_THREADS
            steer.call(run_spread, cpu.run_tasks, n_threads, *args, tick=tick)
        else:
            steer.call(self.backend.run_tasks, *args, threads=self.threads, tick=tick)
        return counts, evals

    def count_pass(self, tasks, plens, tick=None):
        """(survivors, candidates evaluated) per task: looked up in the counting programme's suffix table
        where the run's constraints allow it (on the CPU, whatever the device; the subtrees are not
        walked: ``walked`` is False), else by walking them."""
        table = self._suffix_table() if self.use_table and self._counts_fit(plens) else None
        self.walked = table is None
        mode = 0 if table is None else 2
        return self.run(mode, tasks, plens, np.zeros(len(tasks), np.int64), tick=tick, table=table)

    def _counts_fit(self, plens) -> bool:
        """Whether every subtree below these prefixes holds fewer than 2^62 candidates (dp.counts_fit)."""
        return len(plens) == 0 or dp.counts_fit(self.space, int(np.min(plens)))

    def _suffix_table(self):
        """(jump values, rf cap, table) of the counting programme for the run's current constraints, or None
        when they need the whole prefix (budgets, --no-unproductive, levels) or the table would be large."""
        cons = self.K.cons
        if (
            cons[lm.C_MAX_PARAMS] < INT_LIMIT
            or cons[lm.C_MAX_MACS] < INT_LIMIT
            or cons[lm.C_MAX_PEAK] < INT_LIMIT
            or cons[lm.C_NO_UNPROD]
            or cons[lm.C_NLEVELS]
        ):
            return None
        key = cons.tobytes()
        if self._table_key != key:
            space = self.space
            rf_max = None if space.rf_max is None and cons[lm.C_RF_MAX] == space.rf_cap else int(cons[lm.C_RF_MAX])
            self._table = dp.suffix_counts(space, self.K, int(cons[lm.C_RF_MIN]), rf_max)
            self._table_key = key
        return self._table


def _slabs(space: Space, tasks, plens, counts, slab_rows: int, runner: _Runner, cut=None):
    """Consecutive tasks grouped into slabs of at most ``slab_rows`` survivors, in order; a task holding
    more is replaced by its children (one count pass for them) when the walk reaches it, so splitting
    never runs ahead of the output (memory bounded, rows out early, a signal heard between slabs).
    ``cut(acc)``, given the running totals of the tasks that fit, says how many of them the slab takes
    (default: all).

    Yields (tasks, plens, counts). A task of full depth holds at most depth_max + 1 rows, so a slab
    exceeds ``slab_rows`` only when ``slab_rows`` is below that.
    """
    stack = [[tasks, plens, counts, 0]]  # segments still to cover; the last is the front
    while stack:
        seg = stack[-1]
        t, p, c, i = seg
        if i >= len(c):
            stack.pop()
            continue
        if c[i] > slab_rows and p[i] < space.depth_max:
            seg[3] = i + 1
            r = space.radices[p[i]]
            kids = np.repeat(t[i : i + 1], r, axis=0)
            kids[:, p[i]] = np.arange(r)
            kid_plens = np.full(r, p[i] + 1, np.int64)
            kid_counts, kid_evals = runner.count_pass(kids, kid_plens)
            keep = kid_counts > 0
            if not runner.walked:  # the prefixes looked up and found empty were evaluated too
                runner.stats.evaluated += int(kid_evals[~keep].sum())
            stack.append([kids[keep], kid_plens[keep], kid_counts[keep], 0])
            steer.check()
            continue
        # the tasks from i on that fit in one slab, stopping before any that must be split
        acc = np.cumsum(c[i:])
        fit = max(1, int(np.searchsorted(acc, slab_rows, side="right")))
        j = i + (fit if cut is None else cut(acc[:fit]))
        seg[3] = j
        yield t[i:j], p[i:j], c[i:j]


class Plan:
    """The first cut of the tree, walked chunk by chunk, with the bookkeeping progress reports need."""

    def __init__(
        self,
        space: Space,
        threads: int | None,
        stats: Stats,
        chunk_tasks: int = CHUNK_TASKS,
        q: int | None = None,
        task_range: tuple[int, int] | None = None,
    ):
        """``q`` (the prefix length of the first cut) and ``task_range`` (a contiguous range [start, stop)
        of the first-cut tasks, in depth-first order) make a shard: the rows of consecutive shards, in
        order, are the rows of the whole run, whatever ``q``."""
        import numba

        self.space = space
        self.q = task_depth(space, threads or numba.config.NUMBA_NUM_THREADS) if q is None else q
        if not 0 <= self.q <= space.depth_max:
            raise ValueError(f"first-cut depth {self.q} outside 0..{space.depth_max}")
        n = math.prod(space.radices[: self.q])
        self.start, self.stop = (0, n) if task_range is None else (int(task_range[0]), int(task_range[1]))
        if not 0 <= self.start <= self.stop <= n:
            raise ValueError(f"task range {task_range} outside 0..{n}")
        self.total = self.stop - self.start
        self.chunk_tasks = chunk_tasks
        self.coverage = Coverage(space, self.q)
        self.stats = stats
        stats.tasks = self.total
        stats.space_size = space.size if task_range is None else self.range_size()

    def range_size(self) -> int:
        """Candidates the tasks of this plan answer for (the whole space without a task range)."""
        total = 0
        for start in range(self.start, self.stop, self.chunk_tasks):
            tasks = prefixes(self.space, self.q, start, min(self.stop, start + self.chunk_tasks))
            total += self.coverage.exact(*self.coverage.weights(tasks))
        return total

    def chunks(self, growing: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(tasks, plens, small, big) chunk by chunk; ``growing`` starts small and doubles (early stops)."""
        start, size = self.start, (8 if growing else self.chunk_tasks)
        while start < self.stop:
            stop = min(self.stop, start + size)
            tasks = prefixes(self.space, self.q, start, stop)
            small, big = self.coverage.weights(tasks)
            yield tasks, np.full(stop - start, self.q, np.int64), small, big
            start = stop
            if growing:
                size = min(2 * size, self.chunk_tasks)


class _Reporter:
    """Turns the live arrays of the running kernel into :class:`Progress` snapshots."""

    def __init__(self, progress, stats: Stats, runner: _Runner, t0: float):
        self.progress, self.stats, self.runner, self.t0 = progress, stats, runner, t0
        self.base_fraction = 0.0
        self.rows = 0

    def counting(self, small, big, coverage: Coverage, share: float):
        """Tick for a count pass over tasks whose weights are (small, big); the pass is ``share`` of the run."""
        if self.progress is None:
            return None
        size = max(self.stats.space_size, 1)
        wf = small.astype(np.float64) + big.astype(np.float64) * float(coverage.below)

        def tick():
            counts, evals = self.runner.live
            done = evals >= 0
            part = float(wf[done].sum()) / size if len(wf) == len(done) else 0.0
            self.emit("count", self.base_fraction + share * part, int(evals[done].sum()), int(counts[done].sum()))

        return tick

    def emit(self, phase, fraction, evaluated_now=0, kept_now=0):
        st = self.stats
        self.progress(
            Progress(
                phase=phase,
                fraction=min(1.0, fraction),
                covered=st.covered,
                space_size=st.space_size,
                evaluated=st.evaluated + evaluated_now,
                kept=st.kept + kept_now,
                rows=self.rows,
                elapsed=time.perf_counter() - self.t0,
            )
        )


def evaluate(
    space: Space,
    choice: np.ndarray,
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
) -> tuple[Batch, np.ndarray]:
    """The rows of given whole candidates (``choice[i, p]``: candidate i's choice at position p, each a full
    ``depth_max`` long) and which of them meet the space's constraints: ``(batch of those, mask)``.

    The kernels walk each candidate as a task of prefix length ``depth_max`` (one node): the same code,
    metrics and constraints as the sweep. Samplers and selections that find candidates by other means
    (rfsweep.engine.stage_select) get their rows here.
    """
    choice = np.asarray(choice, np.int64)
    m = len(choice)
    if choice.ndim != 2 or choice.shape[1] != space.depth_max or space.depth_min != space.depth_max:
        raise ValueError("evaluate takes whole candidates of a space of one depth, as an (n, depth) array")
    stats = stats if stats is not None else Stats()
    runner = _Runner(space, device, stats, threads, use_table=False)
    tasks = np.ascontiguousarray(choice)
    plens = np.full(m, space.depth_max, np.int64)
    rows0 = np.arange(m, dtype=np.int64)  # a whole candidate is at most one row
    out = np.zeros((space.out_width, max(m, 1)), np.int64)
    out_ch = np.zeros((max(1, space.depth_max), max(m, 1)), np.int16)
    with steer.steering():
        counts, evals = runner.run(1, tasks, plens, rows0, out, out_ch)
    keep = counts > 0
    stats.evaluated += int(evals.sum())
    stats.kept += int(keep.sum())
    return Batch(out[:, :m], out_ch[:, :m]).take(keep), keep


def evaluate_chosen(space: Space, choice: np.ndarray, *, stats: Stats | None = None, strict: bool = True, **kw):
    """(batch, mask) of :func:`evaluate`, counting the candidates as evaluated and the survivors as kept in
    ``stats``. With ``strict`` every candidate must survive (a programme's premise), else RuntimeError."""
    scratch = Stats()
    batch, mask = evaluate(space, choice, stats=scratch, **kw)
    if stats is not None:
        stats.evaluated += len(mask)
        stats.kept += int(mask.sum())
        stats.device = scratch.device
    if strict and not mask.all():
        raise RuntimeError(
            "a programme chose a candidate the kernels refuse: rfsweep.engine.stage_select or stage_sample is wrong"
        )
    return batch, mask


def count_by_enumeration(
    space: Space,
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    progress: Callable[[Progress], None] | None = None,
    q: int | None = None,
    task_range: tuple[int, int] | None = None,
) -> int:
    """Exact number of survivors by walking the tree (every constraint; pruned subtrees skipped); ``q`` and
    ``task_range`` restrict it to a shard (see :class:`Plan`)."""
    stats = stats if stats is not None else Stats()
    runner = _Runner(space, device, stats, threads, use_table=False)  # the enumeration: every subtree walked
    plan = Plan(space, threads, stats, q=q, task_range=task_range)
    t0 = time.perf_counter()
    rep = _Reporter(progress, stats, runner, t0)
    try:
        with steer.steering():
            for tasks, plens, small, big in plan.chunks():
                counts, evals = runner.count_pass(tasks, plens, rep.counting(small, big, plan.coverage, 1.0))
                stats.kept += int(counts.sum())
                stats.evaluated += int(evals.sum())
                stats.covered += plan.coverage.exact(small, big)
                rep.base_fraction = stats.covered / max(stats.space_size, 1)
    finally:
        stats.seconds = time.perf_counter() - t0
    return stats.kept


def _front(view: np.ndarray, kept: int, held: int) -> np.ndarray:
    """Columns kept:kept + held of a (fields x rows) view of a buffer, moved to the buffer's front as a
    C-contiguous (fields x held) array: a batch the kernels take without compiling for another layout
    (a column slice is not C-contiguous: the encoder compiled and loaded a second signature for it).
    Field by field, in order: each lands at or before where it was, never on a later field."""
    base = view.base if view.base is not None else view
    if not base.flags.c_contiguous or base.ndim != 1:
        return np.ascontiguousarray(view[:, kept : kept + held])
    front = base[: view.shape[0] * held].reshape(view.shape[0], held)
    for f in range(view.shape[0]):
        front[f] = view[f, kept : kept + held]
    return front


def iter_batches(
    space: Space,
    *,
    slab_rows: int = SLAB_ROWS,
    threads: int | None = None,
    device: str = "cpu",
    stats: Stats | None = None,
    progress: Callable[[Progress], None] | None = None,
    reuse_buffers: bool = False,
    limit: int | None = None,
    tighten: Callable[[np.ndarray], None] | None = None,
    q: int | None = None,
    task_range: tuple[int, int] | None = None,
    align: int | None = None,
) -> Iterator[Batch]:
    """Yield the survivors in depth-first order, in batches of at most ``slab_rows`` rows.

    (A task that cannot be split further, a prefix of full depth, holds at most depth_max + 1 rows, so
    a batch exceeds ``slab_rows`` only when ``slab_rows`` is below that.) ``progress(Progress)`` is
    called several times a second. With ``limit`` the walk stops once that many survivors are out
    (chunks start small and double, so a small limit walks little of the tree), and the last batch
    is cut to the limit. With ``reuse_buffers`` every batch is a view of the same two buffers, valid
    until the next batch is asked for: fresh 1M-row buffers cost ~0.1 s of page faults each, a third
    of the fill pass on R7. ``tighten(cons)`` may narrow the run's constraints before each chunk (a
    top-N search turns its N-th best into a budget); the chunks then also start small and double.
    ``q`` and ``task_range`` restrict the run to a shard (see :class:`Plan`).

    With ``align`` (a sink's row group) every batch but the last holds a multiple of ``align`` rows (the
    last is marked ``Batch.last``): the rows past the last multiple are copied to the front of the next
    slab, and a slab (up to ``slab_rows + align // 8`` rows with those: room to land past a multiple) is
    cut at the task boundary that passes the most multiples and leaves the fewest rows behind. A sink then
    never assembles a row group from two batches: on R7 [223, 225] (slabs of ~1,048,000 rows, two
    524,288-row groups short of a few hundred) it copied nearly a row group a slab, 0.2 s of a 1.5 s
    search on one thread; the cut now carries a few thousand rows a slab.
    """
    buffers: list[np.ndarray] = []
    held = kept = 0  # rows past the last multiple of align, at kept:kept + held of the last slab (`behind`)
    behind: tuple[np.ndarray, np.ndarray] | None = None
    carry: list[np.ndarray] = []  # their way to the front of the next slab (slabs share the buffers)
    if limit is not None:
        slab_rows = max(1, min(slab_rows, limit))
    if align:
        slab_rows += align // 8

    width, depth = space.out_width, max(1, space.depth_max)

    def slab(rows: int) -> tuple[np.ndarray, np.ndarray]:
        if not reuse_buffers:
            return np.empty((width, rows), np.int64), np.zeros((depth, rows), np.int16)
        if not buffers or buffers[0].size < width * rows:
            # room for the largest slab at once: a buffer made again touches fresh memory (page faults)
            cap = max(rows, slab_rows)
            buffers[:] = [np.empty(width * cap, np.int64), np.zeros(depth * cap, np.int16)]
        # C-contiguous (fields x rows) views of the buffers' first elements
        return buffers[0][: width * rows].reshape(width, rows), buffers[1][: depth * rows].reshape(depth, rows)

    def cut(acc: np.ndarray) -> int:
        """How many of the tasks that fit (running totals ``acc``) a slab takes, ``align`` given: of those
        that fit beside the rows carried and pass the most multiples of ``align``, the last of those
        leaving the fewest rows past one; all that fit where none reaches a multiple."""
        room = max(1, int(np.searchsorted(acc, slab_rows - held, side="right")))
        total = held + acc[:room]
        most = int(total[-1]) // align * align
        if most == 0:
            return room
        first = int(np.searchsorted(total, most))
        past = total[first:] - most
        return first + len(past) - int(np.argmin(past[::-1]))

    stats = stats if stats is not None else Stats()
    runner = _Runner(space, device, stats, threads)
    plan = Plan(space, threads, stats, q=q, task_range=task_range)
    t0 = time.perf_counter()
    rep = _Reporter(progress, stats, runner, t0)
    left = limit
    # a first N (no sort) needs at most N survivors from any one task: the CPU walks stop there (a task
    # of a huge space with budgets or levels, which no table counts, would otherwise be walked whole)
    capping = limit is not None and tighten is None and stats.device == "cpu"
    ctl = steer.control()
    try:
        with steer.steering():
            for tasks, plens, small, big in plan.chunks(growing=limit is not None or tighten is not None):
                if tighten is not None:
                    tighten(runner.K.cons)
                if capping:
                    ctl[steer.CTL_CAP] = left
                chunk_cover = plan.coverage.exact(small, big)
                chunk_share = chunk_cover / max(stats.space_size, 1)
                # half of a chunk's share for its count pass, half for its fill
                counts, evals = runner.count_pass(tasks, plens, rep.counting(small, big, plan.coverage, 0.5))
                walked = runner.walked
                if capping and walked and np.any(counts >= left):
                    # a task stopped at the cap was not walked to its end: only what it evaluated is settled
                    capped = counts >= left
                    chunk_cover = plan.coverage.exact(small[~capped], big[~capped]) + int(evals[capped].sum())
                # a walking count pass evaluated every candidate the fill will see again; a table lookup
                # only the prefixes, and the fill walks the subtrees that hold survivors
                stats.evaluated += int(evals.sum() if walked else evals[counts == 0].sum())
                stats.kept += int(counts.sum())
                stats.covered += chunk_cover
                keep = counts > 0
                tasks, plens, counts, evals = tasks[keep], plens[keep], counts[keep], evals[keep]
                if left is not None and counts.sum() >= left:
                    # only the tasks up to the one holding the limit-th survivor
                    last = int(np.searchsorted(np.cumsum(counts), left)) + 1
                    tasks, plens, counts, evals = tasks[:last], plens[:last], counts[:last], evals[:last]
                chunk_rows = max(int(counts.sum()), 1)
                done_rows = 0
                for group in _slabs(space, tasks, plens, counts, slab_rows, runner, cut if align else None):
                    g_tasks, g_plens, g_counts = group
                    rows = int(g_counts.sum())
                    rows0 = np.zeros(len(g_counts), np.int64)
                    rows0[1:] = np.cumsum(g_counts)[:-1]
                    rows0 += held
                    n = held + rows
                    if held:
                        if not carry or carry[0].shape[1] < held:  # a few thousand rows: grown as needed
                            size = max(held, 2 * (carry[0].shape[1] if carry else 4096))
                            carry[:] = [np.empty((width, size), np.int64), np.empty((depth, size), np.int16)]
                        carry[0][:, :held] = behind[0][:, kept : kept + held]
                        carry[1][:, :held] = behind[1][:, kept : kept + held]
                    out, out_ch = slab(n)
                    if held:
                        out[:, :held] = carry[0][:, :held]
                        out_ch[:, :held] = carry[1][:, :held]
                    tick = None
                    if progress is not None:
                        at = rep.base_fraction + chunk_share * 0.5 * (1 + done_rows / chunk_rows)

                        def tick(at=at):
                            rep.emit("fill", at)

                    _, fill_evals = runner.run(1, g_tasks, g_plens, rows0, out, out_ch, tick=tick)
                    if not walked:  # the counts came from the programme: the fill is the walk
                        stats.evaluated += int(fill_evals.sum())
                    take = n if left is None else min(n, left)
                    held = 0
                    if align and take != left:  # not the last batch: the rows past a multiple wait
                        held = take % align
                        take -= held
                        kept, behind = take, (out, out_ch)
                    rep.rows += take
                    done_rows += rows
                    if take:
                        yield Batch(out[:, :take], out_ch[:, :take])
                    steer.check()
                    if left is not None:
                        left -= take
                        if left == 0:
                            stats.stopped_early = True
                            return
                rep.base_fraction = stats.covered / max(stats.space_size, 1)
                if progress is not None:
                    rep.emit("fill", rep.base_fraction)
            if held:  # the last rows, moved to the front of the last slab's buffers
                rep.rows += held
                yield Batch(_front(behind[0], kept, held), _front(behind[1], kept, held), last=True)
    finally:
        ctl[steer.CTL_CAP] = 0
        stats.seconds = time.perf_counter() - t0


SMALL_TASK = 4096  # a task with at most this many survivors is filled whole when some of its rows are wanted


class CountedPlan:
    """Every first-cut task counted: the exact number of survivors and where each of them lies.

    :meth:`rows_at` then returns the survivors of given depth-first ranks without writing the others:
    a task holding wanted ranks is split into its children (one count pass per round for all of them)
    until it holds few survivors, then filled, and only the wanted rows are kept. The work is about two
    count passes over the tasks that hold ranks, however many survivors there are.
    """

    def __init__(
        self,
        space: Space,
        *,
        device: str = "cpu",
        threads: int | None = None,
        stats: Stats | None = None,
        progress: Callable[[Progress], None] | None = None,
        q: int | None = None,
        task_range: tuple[int, int] | None = None,
    ):
        self.space = space
        self.stats = stats if stats is not None else Stats()
        self.runner = _Runner(space, device, self.stats, threads)
        self.plan = Plan(space, threads, self.stats, q=q, task_range=task_range)
        self.progress = progress
        t0 = time.perf_counter()
        rep = _Reporter(progress, self.stats, self.runner, t0)
        parts = []
        try:
            with steer.steering():
                for tasks, plens, small, big in self.plan.chunks():
                    counts, evals = self.runner.count_pass(
                        tasks, plens, rep.counting(small, big, self.plan.coverage, 1.0)
                    )
                    parts.append(counts)
                    self.stats.kept += int(counts.sum())
                    self.stats.evaluated += int(evals.sum())
                    self.stats.covered += self.plan.coverage.exact(small, big)
                    rep.base_fraction = self.stats.covered / max(self.stats.space_size, 1)
        finally:
            self.stats.seconds = time.perf_counter() - t0
        self.counts = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        self.total = int(self.counts.sum())

    def rows_at(self, ranks: np.ndarray, group_rows: int = SLAB_ROWS) -> Iterator[Batch]:
        """The survivors of the given depth-first ranks (sorted, distinct, in [0, total)), in that order,
        in batches of about ``group_rows`` rows (first-cut tasks are resolved a group at a time)."""
        ranks = np.asarray(ranks, np.int64)
        if len(ranks) == 0:
            return
        if ranks[0] < 0 or ranks[-1] >= self.total or np.any(np.diff(ranks) <= 0):
            raise ValueError("ranks must be sorted, distinct and below the number of survivors")
        t0 = time.perf_counter()
        starts = np.concatenate(([0], np.cumsum(self.counts)))
        first = np.searchsorted(starts, ranks, side="right") - 1  # first-cut task of each rank
        hit, at = np.unique(first, return_index=True)
        bounds = np.append(at, len(ranks))
        q = self.plan.q
        try:
            with steer.steering():
                work: list = []
                wanted = 0
                for n, i in enumerate(hit):
                    task = prefixes(self.space, q, self.plan.start + int(i), self.plan.start + int(i) + 1)[0]
                    glob = ranks[bounds[n] : bounds[n + 1]]
                    work.append((task, q, int(self.counts[i]), glob - starts[i], glob))
                    wanted += len(glob)
                    if wanted >= group_rows or n == len(hit) - 1:
                        yield self._resolve(work)
                        work, wanted = [], 0
                        steer.check()
        finally:
            self.stats.seconds += time.perf_counter() - t0

    def _resolve(self, work) -> Batch:
        """The wanted rows of the work items (prefix, plen, count, local ranks, global ranks), by global rank."""
        space = self.space
        got: list[tuple[np.ndarray, Batch]] = []
        while work:
            small = [w for w in work if w[2] <= SMALL_TASK or w[1] >= space.depth_max]
            if small:
                got.append(self._fill(small))
            split = [w for w in work if not (w[2] <= SMALL_TASK or w[1] >= space.depth_max)]
            if not split:
                break
            kids_t, kids_l = [], []
            for task, plen, _, _, _ in split:
                r = space.radices[plen]
                kids = np.repeat(task[None, :], r, axis=0)
                kids[:, plen] = np.arange(r)
                kids_t.append(kids)
                kids_l.append(np.full(r, plen + 1, np.int64))
            # a task's rows are its children's rows in order (child 0 owns the task's own node)
            counts, _ = self.runner.count_pass(np.concatenate(kids_t), np.concatenate(kids_l))
            work, at = [], 0
            for (_, plen, _, local, glob), kids in zip(split, kids_t):
                c = counts[at : at + len(kids)]
                at += len(kids)
                starts = np.concatenate(([0], np.cumsum(c)))
                which = np.searchsorted(starts, local, side="right") - 1
                for k in np.unique(which):
                    sel = which == k
                    work.append((kids[k], plen + 1, int(c[k]), local[sel] - starts[k], glob[sel]))
        order = np.argsort(np.concatenate([g for g, _ in got]), kind="stable")
        return Batch.concat([b for _, b in got]).take(order)

    def _fill(self, items) -> tuple[np.ndarray, Batch]:
        tasks = np.stack([w[0] for w in items])
        plens = np.array([w[1] for w in items], np.int64)
        counts = np.array([w[2] for w in items], np.int64)
        rows0 = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        total = int(counts.sum())
        out = np.empty((self.space.out_width, total), np.int64)
        out_ch = np.zeros((max(1, self.space.depth_max), total), np.int16)
        self.runner.run(1, tasks, plens, rows0, out, out_ch)
        pick = np.concatenate([rows0[j] + w[3] for j, w in enumerate(items)])
        return np.concatenate([w[4] for w in items]), Batch(out, out_ch).take(pick)


def first_cut_counts(
    space: Space,
    q: int,
    *,
    threads: int | None = None,
    device: str = "cpu",
    stats: Stats | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> np.ndarray:
    """Survivors of every first-cut task of prefix length ``q``, in order (a table lookup where the
    constraints allow, else a count pass): what a shard planner balances its shards by."""
    return CountedPlan(space, device=device, threads=threads, stats=stats, progress=progress, q=q).counts


def plan_shards(counts: np.ndarray, shards: int) -> list[tuple[int, int]]:
    """Contiguous task ranges [start, stop), at most ``shards`` of them, balanced by survivors (each
    also holds at least one task, and empty stretches fold into their neighbours)."""
    n = len(counts)
    if n == 0:
        return []
    shards = max(1, min(shards, n))
    # weight each task by its survivors plus a little, so that empty stretches still spread the walk
    w = np.asarray(counts, np.float64) + max(1.0, float(np.sum(counts, dtype=np.float64)) / (50.0 * n))
    cum = np.cumsum(w)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, shards) / shards, side="left") + 1
    bounds = np.unique(np.concatenate(([0], np.clip(cuts, 1, n - 1), [n])))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
