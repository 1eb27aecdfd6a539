"""A search run as shards and written as a Parquet dataset, on a Dask cluster or in this process.

The plan: the engine's first-cut tasks (prefixes of length ``q``) are counted, on the client where the
counting programme's table answers (milliseconds: the constraints are rf, jump, out size, min-convs, a
head) and otherwise by a first distributed count pass over even ranges of the tasks; the tasks are then
cut into contiguous shards balanced by survivors (:func:`rfsweep.engine.run.plan_shards`), many more than
workers. Each shard is one job (:func:`rfsweep.distributed.shards.run_shard`) writing one part. Selections give the
rows of one process:

* ``limit``: each shard keeps its first N; once the shards from the first on hold N rows the rest are
  cancelled (their parts removed) and the shard that crosses N is run again to its first rows only;
* ``sort``, ``pareto``: each shard returns its best N or its front, merged on the client
  (:class:`rfsweep.engine.select.TopK`, :class:`rfsweep.engine.select.Front`) and written as one part;
* ``sample``: global ranks are drawn on the client from the plan's exact counts with
  :func:`rfsweep.engine.sample.draw_ranks` (the same draw as one process), and each shard resolves its own;
* ``where``: each shard filters its rows.

Without a count (``limit``, or ``sort``/``pareto`` in this process, or no table on a cluster) the shards
are even ranges of tasks: in this process a single shard, so the walk stops early as one process does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.distributed import shards as shard_jobs
from rfsweep.engine import run as engine
from rfsweep.engine import select
from rfsweep.output import batches, dataset

log = logging.getLogger("rfsweep")
CHECKPOINT_SECONDS = 10.0  # a run in progress rewrites its manifest (the parts done) at most this often


def _whole(space, sel: dict) -> bool:
    """A space of stages whose selection (--sort, --pareto, --sample) the dynamic programmes of
    rfsweep.engine.stage_select answer exactly, for the whole space at once: one job, one part (a shard's range
    would walk its share of up to 2e19 candidates)."""
    if not space.has_blocks or all(sel[k] is None for k in ("sort", "pareto", "sample")):
        return False
    from rfsweep.engine import stage_select

    return stage_select.applicable(space, sel) is None


def _selection(settings: dict) -> dict:
    from rfsweep.engine import objectives

    sel = {k: settings.pop(k, None) for k in batches.SELECT_OPTIONS}
    if sel["pareto"] is not None:
        sel["pareto"] = objectives.parse_objectives(sel["pareto"])
    return sel


class _Run:
    """One sharded search: the plan, the jobs, the manifest, and the bookkeeping for the summary."""

    def __init__(self, pool, space, sel, columns, meta_extra, device, threads, progress, target, manifest):
        self.pool, self.space, self.sel, self.columns = pool, space, sel, columns
        self.meta_extra, self.device, self.threads, self.progress = meta_extra, device, threads, progress
        self.target = target
        self.manifest = manifest  # the one written at the start, updated as parts complete
        self.run = secrets.token_hex(6)
        # the jobs reach the dataset by the same text on every machine: the absolute path, or the URL
        self.location = target.location if target.fs is not None else target.root
        self.stats = engine.Stats(space_size=space.size, device=device)
        self.t0 = time.perf_counter()
        self.rows_out = 0
        self.kind = "merge" if sel["sort"] is not None or sel["pareto"] is not None else "rows"
        if sel["sample"] is not None:
            self.kind = "sample"
        if _whole(space, sel):
            self.kind = "whole"
        self.plan: dict = {}
        self.parts: dict[int, dict] = {}
        self.checkpointed = time.monotonic()

    def job(self, kind: str, index: int, rng, **extra) -> dict:
        from rfsweep.core.version import __version__

        return {
            "run": self.run,
            "version": __version__,
            "kind": kind,
            "index": index,
            "settings": self.space.settings,
            "q": self.plan["q"],
            "range": list(rng),
            "device": self.device,
            # a LocalCluster's workers were started with their numba threads; elsewhere --threads applies
            "threads": None if getattr(self.pool, "local_cluster", None) is not None else self.threads,
            **extra,
        }

    def emit(self, phase: str) -> None:
        if self.progress is None:
            return
        st = self.stats
        self.progress(
            engine.Progress(
                phase=phase,
                fraction=min(1.0, st.covered / max(st.space_size, 1)),
                covered=st.covered,
                space_size=st.space_size,
                evaluated=st.evaluated,
                kept=st.kept,
                rows=self.rows_out,
                elapsed=time.perf_counter() - self.t0,
            )
        )

    def progress_for(self, job: dict):
        """In this process: a shard's engine progress as the whole run's (what is done so far added)."""
        if self.progress is None:
            return None
        st, base_rows, t0 = self.stats, self.rows_out, self.t0

        def show(p):
            self.progress(
                engine.Progress(
                    phase=p.phase,
                    fraction=min(1.0, (st.covered + p.covered) / max(st.space_size, 1)),
                    covered=st.covered + p.covered,
                    space_size=st.space_size,
                    evaluated=st.evaluated + p.evaluated,
                    kept=st.kept + p.kept,
                    rows=base_rows + p.rows,
                    elapsed=time.perf_counter() - t0,
                )
            )

        return show

    def make_plan(self, wanted: int | None) -> dict:
        """q, the shards' task ranges, and each shard's exact survivors where they were counted."""
        from rfsweep.engine import count as counting

        space, sel, pool = self.space, self.sel, self.pool
        guess = wanted or (shard_jobs.SHARDS_PER_WORKER * pool.workers if pool.distributed else 1)
        q, tasks = shard_jobs.first_cut(space, guess)
        self.plan = {"q": q, "tasks": tasks}
        if self.kind == "whole":
            self.plan.update(shards=[[0, tasks]], survivors=None, kind=self.kind)
            return self.plan
        table = counting.count_method(space)[0] == "dp"
        # counts balance the shards and size the parts. Without the table a count is one more walk of the
        # tree: done for a sample (it needs them) and a full or --where run (balance); a --limit run or,
        # in this process, a --sort/--pareto run is one shard and needs none
        need = sel["sample"] is not None or table or (self.kind == "rows" and sel["limit"] is None)
        if self.kind != "sample" and not pool.distributed and (sel["limit"] is not None or self.kind == "merge"):
            need = False
        counts = None
        if need and (table or not pool.distributed):
            counts = engine.first_cut_counts(space, q, threads=self.threads, device=self.device)
        elif need:
            ranges = shard_jobs.even_ranges(tasks, shard_jobs.RANGES_PER_WORKER * pool.workers)
            jobs = [self.job("count", i, r, per_task=True) for i, r in enumerate(ranges)]
            got: dict[int, np.ndarray] = {}
            for job, res in pool.run(shard_jobs.count_range, jobs):
                got[job["index"]] = res["counts"]
            counts = np.concatenate([got[i] for i in range(len(ranges))])
        if counts is not None:
            exact = counts.astype(object)  # Python ints: a space of stages sums past int64 (OFA: 2.2e19)
            total = int(exact.sum())
            rows = min(total, sel["sample"]) if sel["sample"] is not None else total
            n = shard_jobs.shard_count(rows if self.kind != "merge" else 0, pool.workers, pool.distributed, wanted)
            ranges = engine.plan_shards(counts, n)
            self.plan["survivors"] = [int(exact[a:b].sum()) for a, b in ranges]
        else:
            n = shard_jobs.shard_count(0, pool.workers, pool.distributed, wanted)
            ranges = shard_jobs.even_ranges(tasks, n)
            self.plan["survivors"] = None
        self.plan["shards"] = [list(r) for r in ranges]
        self.plan["kind"] = self.kind
        return self.plan

    def done(self, index: int, name: str, rows: int, stats: dict, **extra) -> None:
        """A part is complete: count it, report progress, and now and then rewrite the manifest."""
        st = self.stats
        st.evaluated += stats["evaluated"]
        st.covered += stats["covered"]
        st.kept += stats["kept"]
        st.device = stats.get("device", st.device)
        self.rows_out += rows
        keys = ("evaluated", "covered", "kept")
        self.parts[index] = {"name": name, "rows": rows, **{k: stats[k] for k in keys}, **extra}
        self.emit("fill")
        if time.monotonic() - self.checkpointed > CHECKPOINT_SECONDS:
            self.checkpointed = time.monotonic()
            dataset.write_manifest(self.target, {**self.manifest, "complete": False, "parts": self.part_list()})

    def part_list(self) -> list[dict]:
        return [self.parts[i] for i in sorted(self.parts)]


def search_to_dataset(
    location: str,
    space=None,
    *,
    cluster: str | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    break_lock: bool = False,
    shards: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    stats: engine.Stats | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    columns: str | None = None,
    inputs: tuple[str | None, ...] = (),
    **settings: Any,
) -> engine.Stats:
    """Search and write the survivors as a Parquet dataset at ``location`` (a directory or a URL; see
    :mod:`rfsweep.output.dataset`), sharded over ``cluster="local:N"``, a running ``scheduler``, or this process.

    Reading the dataset gives the rows, in order, of :func:`rfsweep.api.search_to_parquet` to one file
    with the same settings and selection (``limit``, ``sort``, ``pareto``, ``sample`` with ``seed``,
    ``where``). ``resume`` runs only the shards whose part is missing or does not check out
    (:func:`rfsweep.output.verify.check_part`: footer, shard, rows, checksum), in a dataset of the same
    settings; one writer at a time holds the directory's lock (``break_lock``: take over one from another
    machine, see :func:`rfsweep.output.dataset.locked`);
    ``shards`` sets how many shards (default: 8 a worker on a cluster, one in this process, and enough
    that no part exceeds ~8M rows). Returns the Stats of the dataset (``extra``: written, parts,
    shards_run, shards_reused, workers, cluster, startup_seconds); a reused part counts with the figures
    the manifest kept for it (or, after an interrupted run, as covered with the plan's survivors).
    """
    from rfsweep.core.files import is_dataset
    from rfsweep.core.version import __version__
    from rfsweep.distributed.cluster import pool_for
    from rfsweep.engine.count import make_space
    from rfsweep.output import sink

    if not is_dataset(location):
        raise field_error("output", location, "a dataset is a directory: give -o DIR (no extension, or a trailing /)")
    sel = _selection(settings)
    sp = make_space(space, **settings)
    select.check_selection(sel["limit"], sel["sort"], sel["pareto"], sel["sample"], sel["where"], sel["seed"])
    shard_jobs.check_shards(shards)
    if shards not in (None, 1) and _whole(sp, sel):
        raise field_error(
            "shards", shards, "a space of stages runs this selection as one job (exact, by dynamic programming)"
        )
    columns = sink.layout_name(columns, sp)  # None: the space's default (wide; lists for stages)
    if cluster is None and scheduler is None:
        engine.check_threads(threads)
    for inp in inputs:
        with contextlib.suppress(OSError):
            if inp is not None and os.path.samefile(location, inp):
                raise field_error("output", location, f"is an input of this command ({inp}); write elsewhere")
    if sel["where"] is not None:
        from rfsweep.engine.where import parse_where

        parse_where(sel["where"], sink.schema(sp, layout="compact"))  # a bad filter fails before any work
    if sel["sample"] is not None and sel["seed"] is None:
        sel["seed"] = _seed(location, resume, sel["sample"])
    meta_extra = {**sel, "pareto": sel["pareto"] and list(sel["pareto"]), "columns": columns}
    spec = dataset.normalized({"version": __version__, "space": sp.settings, **meta_extra})
    stats = stats if stats is not None else engine.Stats()
    with dataset.claim(location, spec, resume, break_lock) as (target, previous):
        pool = pool_for(cluster, scheduler, threads)
        run = None
        try:
            base = {"spec": spec, "version": __version__, "cluster": pool.label}
            run = _Run(pool, sp, sel, columns, meta_extra, device, threads, progress, target, base)
            pool.prepare(columns, device)
            startup = time.perf_counter() - run.t0
            run.plan = previous["plan"] if previous is not None else run.make_plan(shards)
            planned = time.perf_counter() - run.t0 - startup
            base["plan"] = run.plan
            dataset.start(target, base, fresh=previous is None)
            ran, reused = _run_shards(run, previous)
            run.stats.seconds = time.perf_counter() - run.t0
            parts = run.part_list()
            totals = {
                "rows": run.rows_out,
                "parts": len(parts),
                "space_size": sp.size,
                "survivors": sum(run.plan["survivors"]) if run.plan.get("survivors") is not None else None,
            }
            this_run = {
                "shards_run": ran,
                "shards_reused": reused,
                "seconds": round(run.stats.seconds, 3),
                "startup_seconds": round(startup, 3),
                "plan_seconds": round(planned, 3),
                "workers": pool.workers,
            }
            dataset.finish(target, {**base, "parts": parts, "totals": totals, "run": this_run})
        finally:
            pool.close()
            with contextlib.suppress(OSError, RFSweepError):
                target.remove_temporaries()  # what workers killed with the pool left
    st = run.stats
    stats.space_size, stats.evaluated, stats.covered, stats.kept = st.space_size, st.evaluated, st.covered, st.kept
    stats.tasks, stats.seconds, stats.device = run.plan["tasks"], st.seconds, st.device
    stats.stopped_early = st.covered < st.space_size
    stats.extra.update(st.extra, written=run.rows_out, cluster=pool.label, **this_run)
    stats.extra["parts"] = len(parts)
    return stats


def _seed(location: str, resume: bool, sample: int) -> int:
    """The seed of a --sample without one: the dataset's own when resuming it, else fresh entropy (recorded
    in the manifest and the parts' metadata, so the sample can be drawn again)."""
    if resume:
        with contextlib.suppress(RFSweepError):
            manifest = dataset.read_manifest(dataset.open_target(location))
            spec = (manifest or {}).get("spec") or {}
            if spec.get("sample") == sample and isinstance(spec.get("seed"), int):
                return spec["seed"]
    return int(np.random.SeedSequence().entropy % (2**63))


def _check_result(res: dict) -> None:
    if res.get("stopped"):  # a shard of a run this client stopped: never part of a dataset
        raise RFSweepError(f"shard {res['index']} was stopped before it finished; run again with --resume")


def _figures(kept: dict | None) -> bool:
    """Whether a manifest's entry for a part has the candidate figures a reused part counts with."""
    return kept is not None and all(
        isinstance(kept.get(k), int) and not isinstance(kept.get(k), bool) and kept[k] >= 0
        for k in ("evaluated", "covered", "kept", "rows")
    )


def _verified(run: _Run, name: str, index: int, tasks, kept: dict | None) -> str | None:
    """The SHA-256 of a part present when resuming, if it is the part its manifest entry (``kept``, None
    when the run was interrupted before recording it) and the plan describe; else None, and a note on
    stderr says why it is written again."""
    from rfsweep.output import sink, verify

    want = {
        "index": index,
        "tasks": list(tasks),
        "rows": (kept or {}).get("rows"),
        "checksum": (kept or {}).get("checksum"),
        "spec": json.loads(sink.metadata(run.space, run.meta_extra)[sink.META_KEY]),
    }
    reason, digest = verify.check_part(run.target, name, want)
    if reason is not None:
        log.info(f"note: {name}: {reason}; it is written again")
        return None
    return digest


def _run_shards(run: _Run, previous: dict | None) -> tuple[int, int]:
    """Run the plan's shards (those whose part is missing when resuming ``previous``); returns (shards
    run, parts reused)."""
    sp, sel, plan, pool, target = run.space, run.sel, run.plan, run.pool, run.target
    ranges = [tuple(r) for r in plan["shards"]]
    n = len(ranges)
    present = set(target.names()) if previous is not None else set()
    kept_before = {p.get("name"): p for p in (previous or {}).get("parts") or []}
    common = {"columns": run.columns, "meta": run.meta_extra, "target": run.location}
    planned = (
        {dataset.part_name(0, 1)} if run.kind in ("whole", "merge") else {dataset.part_name(i, n) for i in range(n)}
    )
    for name in sorted(x for x in present if dataset.PART_RE.match(x) and x not in planned):
        log.info(f"note: {name}: not a part of the plan ({len(planned)} parts); removed")
        target.remove(name)

    if run.kind == "whole":
        name = dataset.part_name(0, 1)
        if name in present and _figures(kept_before.get(name)):
            digest = _verified(run, name, 0, ranges[0], kept_before[name])
            if digest is not None:
                p = kept_before[name]
                run.done(0, name, p["rows"], p, shards=1, tasks=list(ranges[0]), checksum=digest)
                return 0, 1
        job = run.job("rows", 0, ranges[0], name=name, selection=sel, **common)
        for _, res in pool.run(shard_jobs.run_shard, [job], run.progress_for):
            _check_result(res)
            extra = {"tasks": list(ranges[0]), "seconds": round(res["seconds"], 3), "worker": res["worker"]}
            run.done(0, name, res["rows"], res["stats"], checksum=res["checksum"], **extra)
        return 1, 0

    whole = [ranges[0][0], ranges[-1][1]]
    if run.kind == "merge":
        name = dataset.part_name(0, 1)
        if name in present and _figures(kept_before.get(name)):
            digest = _verified(run, name, 0, whole, kept_before[name])
            if digest is not None:
                p = kept_before[name]
                run.done(0, name, p["rows"], p, shards=n, tasks=whole, checksum=digest)
                return 0, 1
        jobs = [run.job("merge", i, r, selection=sel, **common) for i, r in enumerate(ranges)]
        results = []
        for _, res in pool.run(shard_jobs.run_shard, jobs, run.progress_for):
            _check_result(res)
            results.append(res)
            s = res["stats"]
            run.stats.evaluated += s["evaluated"]
            run.stats.covered += s["covered"]
            run.stats.kept += s["kept"]
            run.stats.device = s["device"]
            run.emit("fill")
        from rfsweep.output import sink

        batch = shard_jobs.merge(sp, sel, sorted(results, key=lambda r: r["index"]))
        sch = sink.schema(sp, layout=run.columns)
        meta = {**sink.metadata(sp, run.meta_extra), **dataset.part_record(0, whole)}
        with dataset.part_writer(target, name, sch, meta, sp) as part:
            if len(batch):
                part.write_batch(batch)
        st = run.stats
        run.stats = engine.Stats(space_size=sp.size, device=st.device)  # done() adds the run's figures once
        figures = {"evaluated": st.evaluated, "covered": st.covered, "kept": st.kept}
        run.done(0, name, part.rows, figures, shards=n, tasks=whole, checksum=part.checksum)
        return len(results), 0

    names = [dataset.part_name(i, n) for i in range(n)]
    rows: dict[int, int] = {}
    for i in range(n):
        if names[i] in present:
            p = kept_before.get(names[i])
            digest = _verified(run, names[i], i, ranges[i], p)
            if digest is None:
                continue
            rows[i] = target.rows(names[i])
            if not _figures(p):  # done after the last checkpoint of an interrupted run (or figures edited away)
                size = engine.Plan(sp, 1, engine.Stats(), q=plan["q"], task_range=ranges[i]).range_size()
                survivors = plan["survivors"][i] if plan.get("survivors") is not None else rows[i]
                p = {"evaluated": 0, "covered": size, "kept": survivors}
            run.done(i, names[i], rows[i], p, tasks=list(ranges[i]), reused=True, checksum=digest)
    reused = len(rows)
    ranks = None
    if run.kind == "sample":
        from rfsweep.engine.sample import draw_ranks

        total = sum(plan["survivors"])
        drawn = list(draw_ranks(total, sel["sample"], np.random.default_rng(sel["seed"])))
        ranks = shard_jobs.split_ranks(np.concatenate(drawn) if drawn else np.zeros(0, np.int64), plan["survivors"])
        run.stats.extra["sampled_from"] = total
    limit = sel["limit"]
    cut = shard_jobs.limit_cut(rows, n, limit) if limit is not None else None
    selection = {k: sel[k] for k in ("limit", "where")}
    jobs = []
    for i in [] if cut is not None else [i for i in range(n) if i not in rows]:
        extra = {"ranks": ranks[i]} if ranks is not None else {"selection": selection}
        jobs.append(run.job("sample" if ranks is not None else "rows", i, ranges[i], name=names[i], **common, **extra))
    ran = 0
    for job, res in pool.run(shard_jobs.run_shard, jobs, run.progress_for):
        _check_result(res)
        i = job["index"]
        ran += 1
        rows[i] = res["rows"]
        extra = {"tasks": list(ranges[i]), "seconds": round(res["seconds"], 3), "worker": res["worker"]}
        run.done(i, names[i], res["rows"], res["stats"], checksum=res["checksum"], **extra)
        if limit is not None:
            cut = shard_jobs.limit_cut(rows, n, limit)
            if cut is not None:
                break  # the shards still running hold none of the first N rows: cancelled
    if cut is not None:
        c, keep = cut
        if rows[c] > keep:  # the shard that crosses N, run again to its first rows only
            narrowed = {**selection, "limit": keep}
            again = run.job("rows", c, ranges[c], name=names[c], **common, selection=narrowed)
            again["run"] = secrets.token_hex(6)  # the first run id is stopped on the workers now
            for _, res in pool.run(shard_jobs.run_shard, [again]):
                _check_result(res)
                run.parts[c]["checksum"] = res["checksum"]
            run.rows_out -= rows[c] - keep
            rows[c] = run.parts[c]["rows"] = keep
        for i in range(c + 1, n):
            target.remove(names[i])
            if i in run.parts:
                run.rows_out -= run.parts.pop(i)["rows"]
    return ran, reused


__all__ = ["search_to_dataset"]
