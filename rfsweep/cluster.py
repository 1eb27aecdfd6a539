"""Sweeps sharded over a Dask cluster (or over this process), written as a Parquet dataset.

>>> import rfsweep
>>> rfsweep.search_to_parquet("r7", depth=7, rf_min=200, rf_max=250, cluster="local:2")  # doctest: +SKIP
>>> from rfsweep import cluster
>>> cluster.count(depth=7, rf_min=200, max_params=10**6, scheduler="tcp://head:8786")  # doctest: +SKIP

The cluster layer only plans, submits, retries and merges; it never computes a metric. The plan: the
first-cut tasks of the engine (prefixes of length ``q``) are counted (on the client where the counting
programme's table answers, in milliseconds; else by a first distributed count pass split evenly over the
workers), then cut into contiguous shards balanced by survivors (``engine.plan_shards``), many more than
workers. Each shard is one Dask task (:func:`rfsweep.shard_jobs.run_shard`) that rebuilds the space from its
settings, runs the engine on its range and writes its part; a shard whose worker dies is run again
elsewhere (the scheduler reschedules it; a part appears only when complete, so a rerun is harmless), and
an exception is retried twice. Selections give the rows of one process: ``--limit`` keeps the first
shards' rows up to N (later shards are cancelled, the shard that crosses N is run again to N rows);
``--sort`` and ``--pareto`` merge each shard's best N or front on the client; ``--sample`` draws global
ranks on the client from the plan's exact counts and each shard resolves its own.

Workers: one Dask thread each (each kernel call already uses every numba thread of its process: numba's
workqueue layer aborts under concurrent calls, and omp would oversubscribe), ``NUMBA_NUM_THREADS`` set
before numba loads (``local:N`` sets it to cores / N; a running cluster's workers take it from their
environment), kernels warmed on every worker before the shards start, and a worker of another rfsweep
version refused. dask is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rfsweep import dataset, engine, steer
from rfsweep import shards as shard_jobs
from rfsweep.errors import RFSweepError, field_error

log = logging.getLogger("rfsweep")

RETRIES = 2  # a shard that raises (a transient filesystem error) runs again twice before the run fails
CONNECT_SECONDS = 10  # how long to wait for a scheduler to answer
WORKERS_SECONDS = 30  # how long to wait for a running cluster to have a worker
POLL_SECONDS = steer.POLL_SECONDS  # the client's wait between looks at finished shards and signals
MAX_LOCAL_WORKERS = 1024
DASK_MISSING = "needs dask.distributed: pip install 'rfsweep[dask]'"


# ------------------------------------------------------------------ where the jobs run


class InProcess:
    """Runs the jobs one after another in this process: ``-o DIR`` without a cluster. Each job uses
    every numba thread here, as a whole search does."""

    distributed = False
    label = "this process"
    workers = 1

    def prepare(self, columns: str, device: str) -> None:
        pass

    def run(self, fn: Callable, jobs: list[dict], progress_for=None) -> Iterator[tuple[dict, dict]]:
        for job in jobs:
            yield job, fn(job, progress_for(job)) if progress_for is not None else fn(job)

    def close(self) -> None:
        pass


class DaskPool:
    """Runs the jobs as Dask tasks on a cluster's workers, yielding results as shards finish."""

    distributed = True

    def __init__(self, client, local_cluster, fieldname: str, label: str):
        self.client, self.local_cluster, self.fieldname, self.label = client, local_cluster, fieldname, label
        self.runs: set[str] = set()
        self.closed = False
        self.seen = 1

    @property
    def workers(self) -> int:
        """Workers now (or when the pool was closed)."""
        if not self.closed:
            self.seen = max(1, len(self.client.scheduler_info()["workers"]))
        return self.seen

    def prepare(self, columns: str, device: str) -> None:
        """Refuse workers of another rfsweep version; load the kernels on every worker."""
        from rfsweep import __version__

        if not self.client.scheduler_info()["workers"]:
            try:
                self.client.wait_for_workers(1, timeout=WORKERS_SECONDS)
            except (TimeoutError, OSError):
                raise field_error(self.fieldname, self.label, f"no worker joined in {WORKERS_SECONDS} s") from None
        infos = self.client.scheduler_info()["workers"]
        token = secrets.token_hex(4)
        futures = [
            self.client.submit(
                shard_jobs.warm,
                {"columns": columns, "device": device},
                key=f"rfsweep-warm-{token}-{i}",
                workers=[addr],
                pure=False,
            )
            for i, addr in enumerate(infos)
        ]
        for addr, fut in zip(infos, futures):
            try:
                got = fut.result()
            except Exception as exc:
                raise field_error(self.fieldname, self.label, f"worker {addr}: {shard_jobs.errors_in(exc)}") from None
            if got["version"] != __version__:
                raise field_error(
                    self.fieldname,
                    self.label,
                    f"worker {addr} runs rfsweep {got['version']}, this client {__version__}: "
                    "install the same version on every worker",
                )
        busy = sorted(addr for addr, w in infos.items() if w.get("nthreads", 1) > 1)
        if busy:
            log.info(
                f"note: {len(busy)} worker(s) run several Dask threads ({busy[0]}, ...): their shards run one at a "
                "time per process (start workers with --nthreads 1 and NUMBA_NUM_THREADS set to their cores)"
            )

    def run(self, fn: Callable, jobs: list[dict], progress_for=None) -> Iterator[tuple[dict, dict]]:
        """Submit every job (earlier shards first), then yield (job, result) as they finish; on an error, a
        signal, or when the caller stops early, cancel the rest and stop the running ones."""
        from distributed import as_completed

        if not jobs:
            return
        run = jobs[0]["run"]
        self.runs.add(run)
        futures = {}
        for job in jobs:
            fut = self.client.submit(
                fn,
                job,
                key=f"rfsweep-{job['kind']}-{run}-{job['index']}-{job.get('attempt', 0)}",
                retries=RETRIES,
                priority=len(jobs) - job["index"],
                pure=False,
            )
            futures[fut.key] = (fut, job)
        pending = as_completed([f for f, _ in futures.values()])
        finished = False
        try:
            with steer.steering():
                while not pending.is_empty():
                    ready = pending.next_batch(block=False)
                    if not ready:
                        steer.check()
                        time.sleep(POLL_SECONDS)
                        continue
                    for fut in ready:
                        job = futures[fut.key][1]
                        yield job, self._result(fut, job)
                    steer.check()
            finished = True
        finally:
            if not finished:
                self.stop(run, [f for f, _ in futures.values()])

    def _result(self, fut, job: dict) -> dict:
        try:
            return fut.result()
        except RFSweepError:
            raise
        except Exception as exc:
            from distributed.scheduler import KilledWorker

            what = f"shard {job['index']} (first-cut tasks {job['range'][0]}..{job['range'][1] - 1})"
            if isinstance(exc, KilledWorker):
                raise field_error(
                    self.fieldname,
                    self.label,
                    f"{what}: every worker that ran it died (distributed.scheduler.allowed-failures); "
                    "see the workers' logs (out of memory?)",
                ) from None
            raise field_error(self.fieldname, self.label, f"{what} failed: {shard_jobs.errors_in(exc)}") from None

    def stop(self, run: str, futures: list) -> None:
        """Cancel what has not started; stop the shards that run (they remove their temporary parts)."""
        with contextlib.suppress(Exception):
            self.client.cancel(futures, force=True)
        with contextlib.suppress(Exception):
            self.client.run(shard_jobs.stop_run, run)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.workers  # noqa: B018  (remembered for the summary)
        self.closed = True
        with contextlib.suppress(Exception):
            self.client.close()
        if self.local_cluster is not None:
            with contextlib.suppress(Exception):
                self.local_cluster.close()


def parse_cluster(value: str) -> int:
    """``local:N`` (N worker processes on this machine) or ``local`` (one per core): N."""
    text = str(value).strip()
    if text == "local":
        return os.cpu_count() or 1
    kind, _, n = text.partition(":")
    if kind != "local" or not n.strip().isdigit() or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
        raise field_error(
            "cluster",
            value,
            f"must be local:N, N in 1..{MAX_LOCAL_WORKERS} worker processes on this machine (a running cluster "
            "is --scheduler tcp://host:8786)",
        )
    return int(n)


def connect(cluster: str | None = None, scheduler: str | None = None, threads: int | None = None) -> DaskPool:
    """A LocalCluster of N worker processes (one Dask thread and cores / N numba threads each), or a client
    of a running scheduler (an address, or a scheduler file written by ``dask scheduler --scheduler-file``)."""
    if cluster is not None and scheduler is not None:
        raise field_error("scheduler", scheduler, "give --cluster or --scheduler, not both")
    fieldname, value = ("cluster", cluster) if cluster is not None else ("scheduler", scheduler)
    n = parse_cluster(cluster) if cluster is not None else None
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise field_error("scheduler", scheduler, "must be an address such as tcp://host:8786 or a scheduler file")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise field_error(fieldname, value, DASK_MISSING) from None
    if n is not None:
        per = threads or max(1, (os.cpu_count() or 1) // n)
        try:
            lc = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                # set in each worker process before anything imports numba (Nanny env)
                env={"NUMBA_NUM_THREADS": str(per)},
            )
            return DaskPool(Client(lc), lc, fieldname, f"local:{n}")
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise field_error(fieldname, value, f"cannot start the workers ({shard_jobs.errors_in(exc)})") from None
    try:
        if scheduler.endswith(".json") and os.path.isfile(scheduler):
            client = Client(scheduler_file=scheduler, timeout=CONNECT_SECONDS)
        else:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise field_error("scheduler", scheduler, f"cannot connect ({why})") from None
    return DaskPool(client, None, "scheduler", scheduler)


def pool_for(cluster: str | None, scheduler: str | None, threads: int | None):
    if cluster is None and scheduler is None:
        return InProcess()
    return connect(cluster, scheduler, threads)


# ------------------------------------------------------------------ the sharded search


def _selection(settings: dict) -> dict:
    from rfsweep import objectives, sweep

    sel = {k: settings.pop(k, None) for k in sweep.SELECT_OPTIONS}
    if sel["pareto"] is not None:
        sel["pareto"] = objectives.parse_objectives(sel["pareto"])
    return sel


def _range_size(space, q: int, rng) -> int:
    return engine.Plan(space, 1, engine.Stats(), q=q, task_range=tuple(rng)).range_size()


class _Run:
    """One sharded search: the plan, the jobs, and the bookkeeping the summary and progress need."""

    def __init__(self, pool, space, sel, columns, meta_extra, device, threads, progress, location, run):
        self.pool, self.space, self.sel, self.columns = pool, space, sel, columns
        self.meta_extra, self.device, self.threads, self.progress = meta_extra, device, threads, progress
        self.location, self.run = location, run
        self.stats = engine.Stats(space_size=space.size)
        self.t0 = time.perf_counter()
        self.rows_out = 0
        self.kind = "merge" if sel["sort"] is not None or sel["pareto"] is not None else "rows"
        if sel["sample"] is not None:
            self.kind = "sample"

    def job(self, fn_kind: str, index: int, rng, **extra) -> dict:
        from rfsweep import __version__

        return {
            "run": self.run,
            "version": __version__,
            "kind": fn_kind,
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

    def make_plan(self, wanted: int | None) -> dict:
        """q, the shards' task ranges, and each shard's exact survivors where they were counted."""
        space, sel, pool = self.space, self.sel, self.pool
        guess = wanted or (shard_jobs.SHARDS_PER_WORKER * pool.workers if pool.distributed else 1)
        q, tasks = shard_jobs.first_cut(space, guess)
        self.plan = {"q": q, "tasks": tasks}
        from rfsweep import counting

        table = counting.count_method(space)[0] == "dp"
        # counts balance the shards and size the parts; a --limit or a merged selection in this process runs
        # one shard (no count needed), and without the table a count would be one more walk of the tree
        need = sel["sample"] is not None or (self.kind == "rows" and sel["limit"] is None) or table
        if self.kind != "sample" and not pool.distributed and (sel["limit"] is not None or self.kind == "merge"):
            need = False
        counts = None
        if need and (table or not pool.distributed):
            counts = engine.first_cut_counts(space, q, threads=self.threads, device=self.device)
        elif need:
            ranges = shard_jobs.even_ranges(tasks, shard_jobs.RANGES_PER_WORKER * pool.workers)
            jobs = [self.job("count", i, r, per_task=True) for i, r in enumerate(ranges)]
            parts: dict[int, np.ndarray] = {}
            for job, res in pool.run(shard_jobs.count_range, jobs):
                parts[job["index"]] = res["counts"]
                self.emit("count")
            counts = np.concatenate([parts[i] for i in range(len(ranges))])
        if counts is not None:
            total = int(counts.sum())
            rows = min(total, sel["sample"]) if sel["sample"] is not None else total
            n = shard_jobs.shard_count(rows if self.kind != "merge" else 0, pool.workers, pool.distributed, wanted)
            ranges = engine.plan_shards(counts, n)
            self.plan["survivors"] = [int(counts[a:b].sum()) for a, b in ranges]
        else:
            n = shard_jobs.shard_count(0, pool.workers, pool.distributed, wanted)
            ranges = shard_jobs.even_ranges(tasks, n)
            self.plan["survivors"] = None
        self.plan["shards"] = [list(r) for r in ranges]
        self.plan["kind"] = self.kind
        return self.plan

    def progress_for(self, job: dict):
        """In this process: the shard's engine progress as the whole run's (covered and rows so far added)."""
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


def search_to_dataset(
    location: str,
    space=None,
    *,
    cluster: str | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    shards: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    stats: engine.Stats | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    columns: str = "wide",
    inputs: tuple[str | None, ...] = (),
    **settings: Any,
) -> engine.Stats:
    """Search and write the survivors as a Parquet dataset at ``location`` (a directory or a URL; see
    :mod:`rfsweep.dataset`), sharded over ``cluster="local:N"``, a running ``scheduler``, or this process.

    Reading the dataset gives the rows, in order, of :func:`rfsweep.sweep.search_to_parquet` to one file
    with the same settings and selection (``limit``, ``sort``, ``pareto``, ``sample`` with ``seed``,
    ``where``). ``resume`` runs only the shards whose part is missing, in a dataset of the same settings;
    ``shards`` overrides how many shards (default: 8 a worker on a cluster, one in this process, and
    enough that no part exceeds ~8M rows). Returns the run's Stats (``extra``: written, parts, shards_run,
    shards_reused, workers, cluster).
    """
    from rfsweep import __version__, sink, sweep
    from rfsweep.counting import make_space

    sel = _selection(settings)
    sp = make_space(space, **settings)
    sweep.check_selection(sel["limit"], sel["sort"], sel["pareto"], sel["sample"], sel["where"], sel["seed"])
    shard_jobs.check_shards(shards)
    sink.layout_name(columns)
    if cluster is None and scheduler is None:
        engine.check_threads(threads)
    for inp in inputs:
        if inp is not None and os.path.exists(location) and os.path.exists(inp) and os.path.samefile(location, inp):
            raise field_error("output", location, f"is an input of this command ({inp}); write elsewhere")
    if sel["sample"] is not None and sel["seed"] is None:
        sel["seed"] = _seed(location, resume, sel["sample"])
    meta_extra = {**sel, "pareto": sel["pareto"] and list(sel["pareto"]), "columns": columns}
    spec = dataset.normalized({"version": __version__, "space": sp.settings, **meta_extra})
    target, manifest = dataset.prepare(location, spec, resume)
    stats = stats if stats is not None else engine.Stats()
    pool = pool_for(cluster, scheduler, threads)
    job_location = location if target.fs is not None else target.root
    run = _Run(pool, sp, sel, columns, meta_extra, device, threads, progress, job_location, secrets.token_hex(6))
    try:
        pool.prepare(columns, device)
        startup = time.perf_counter() - run.t0
        plan = manifest["plan"] if manifest is not None else run.make_plan(shards)
        run.plan = plan
        dataset.start(
            target,
            {"spec": spec, "version": __version__, "plan": plan, "cluster": pool.label},
            fresh=manifest is None,
        )
        parts = _run_shards(run, target, reuse=manifest is not None)
        run.stats.seconds = time.perf_counter() - run.t0
        totals = {
            "rows": run.rows_out,
            "parts": len(parts),
            "space_size": sp.size,
            "survivors": sum(plan["survivors"]) if plan.get("survivors") is not None else None,
        }
        this_run = {
            "shards_run": run.stats.extra.get("shards_run", 0),
            "shards_reused": run.stats.extra.get("shards_reused", 0),
            "evaluated": run.stats.evaluated,
            "seconds": round(run.stats.seconds, 3),
            "startup_seconds": round(startup, 3),
            "workers": pool.workers,
        }
        dataset.finish(
            target,
            {
                "spec": spec,
                "version": __version__,
                "plan": plan,
                "cluster": pool.label,
                "parts": parts,
                "totals": totals,
                "run": this_run,
            },
        )
    finally:
        pool.close()
        with contextlib.suppress(OSError, RFSweepError):
            target.remove_temporaries()  # what workers killed with the pool left
    st = run.stats
    stats.space_size, stats.evaluated, stats.covered, stats.kept = st.space_size, st.evaluated, st.covered, st.kept
    stats.tasks, stats.seconds, stats.device = plan["tasks"], st.seconds, st.device
    stats.stopped_early = st.covered < st.space_size
    stats.extra.update(
        st.extra,
        written=run.rows_out,
        parts=len(parts),
        workers=pool.workers,
        cluster=pool.label,
        startup_seconds=startup,
    )
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


def _run_shards(run: _Run, target: dataset.Target, reuse: bool) -> list[dict]:
    """Run the plan's shards (those whose part is missing when resuming); returns the manifest's parts."""
    sp, sel, plan, pool = run.space, run.sel, run.plan, run.pool
    ranges = [tuple(r) for r in plan["shards"]]
    n = len(ranges)
    st = run.stats
    st.device = run.device if run.device == "cpu" else st.device
    names = [dataset.part_name(i, n) for i in range(n)]
    present = set(target.names()) if reuse else set()
    common = {"columns": run.columns, "meta": run.meta_extra, "target": run.location}

    if run.kind == "merge":
        name = dataset.part_name(0, 1)
        if reuse and name in present:
            rows = target.rows(name)
            run.rows_out = rows
            st.extra.update(shards_run=0, shards_reused=n)
            st.covered = sp.size
            return [{"name": name, "rows": rows, "shards": [0, n]}]
        jobs = [run.job("merge", i, r, selection=sel, **common) for i, r in enumerate(ranges)]
        results = []
        for _, res in pool.run(shard_jobs.run_shard, jobs, run.progress_for):
            shard_jobs.add_stats(st, res["stats"])
            results.append(res)
            run.emit("fill")
        results.sort(key=lambda r: r["index"])
        batch = shard_jobs.merge(sp, sel, results)
        from rfsweep import sink

        sch = sink.schema(sp, layout=run.columns)
        with dataset.part_writer(target, name, sch, sink.metadata(sp, run.meta_extra)) as part:
            if len(batch):
                part.write(sink.to_table(batch, sp, sink.LayerTables(sp), sch))
        run.rows_out = part.rows
        st.extra.update(shards_run=n, shards_reused=0)
        return [{"name": name, "rows": part.rows, "shards": [0, n]}]

    rows: dict[int, int] = {}
    for i in range(n):
        if names[i] in present:
            rows[i] = target.rows(names[i])
            st.covered += _range_size(sp, plan["q"], ranges[i])
            if plan.get("survivors") is not None and sel["limit"] is None:
                st.kept += plan["survivors"][i]
    reused = len(rows)
    ranks = None
    if run.kind == "sample":
        from rfsweep.sample import draw_ranks

        total = sum(plan["survivors"])
        drawn = list(draw_ranks(total, sel["sample"], np.random.default_rng(sel["seed"])))
        ranks = shard_jobs.split_ranks(np.concatenate(drawn) if drawn else np.zeros(0, np.int64), plan["survivors"])
        st.extra["sampled_from"] = total
    limit = sel["limit"]
    cut = shard_jobs.limit_cut(rows, n, limit) if limit is not None else None
    todo = [] if cut is not None else [i for i in range(n) if i not in rows]
    selection = {k: sel[k] for k in ("limit", "where")}
    jobs = []
    for i in todo:
        extra = {"ranks": ranks[i]} if ranks is not None else {"selection": selection}
        jobs.append(run.job("sample" if ranks is not None else "rows", i, ranges[i], name=names[i], **common, **extra))
    run.rows_out = sum(rows.values())
    ran = 0
    for job, res in pool.run(shard_jobs.run_shard, jobs, run.progress_for):
        i = job["index"]
        rows[i] = res["rows"]
        ran += 1
        shard_jobs.add_stats(st, res["stats"])
        run.rows_out += res["rows"]
        run.emit("fill")
        if limit is not None:
            cut = shard_jobs.limit_cut(rows, n, limit)
            if cut is not None:
                break  # the rest are not among the first N: cancelled
    if cut is not None:
        c, keep = cut
        if rows[c] > keep:  # the shard that crosses N, run again to its first rows only
            narrowed = {**selection, "limit": keep}
            again = run.job("rows", c, ranges[c], name=names[c], attempt=1, **common, selection=narrowed)
            for _ in pool.run(shard_jobs.run_shard, [again]):
                pass
            rows[c] = keep
        for i in range(c + 1, n):
            target.remove(names[i])
            rows.pop(i, None)
        run.rows_out = sum(rows.values())
    st.extra.update(shards_run=ran, shards_reused=reused)
    return [{"name": names[i], "rows": rows[i], "tasks": list(ranges[i])} for i in sorted(rows)]


# ------------------------------------------------------------------ counting on a cluster


def count_details(
    space=None,
    *,
    cluster: str | None = None,
    scheduler: str | None = None,
    method: str = "enumerate",
    device: str = "cpu",
    threads: int | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    shards: int | None = None,
    **settings: Any,
):
    """:func:`rfsweep.counting.count_details` with the pruned enumeration spread over a cluster: the first-cut
    tasks in ``shards`` even ranges (default 16 a worker), each walked by one worker, the counts added.
    ``method="auto"`` or ``"dp"`` answer by the counting programme here when it can (milliseconds); the
    cluster walks only what needs enumerating."""
    from rfsweep import __version__, counting

    sp = counting.make_space(space, for_search=False, **settings)
    if method not in counting.METHODS:
        raise field_error("method", method, f"must be one of {', '.join(counting.METHODS)}")
    shard_jobs.check_shards(shards)
    best, why = counting.count_method(sp)
    if method == "dp" or (method == "auto" and best == "dp") or (cluster is None and scheduler is None):
        return counting.count_details(sp, device=device, threads=threads, method=method, progress=progress)
    if method == "enumerate" and best == "dp":
        why = "asked for (--method)"
    t0 = time.perf_counter()
    pool = connect(cluster, scheduler, threads)
    try:
        pool.prepare("compact", device)
        n = shards or shards_per_count(pool)
        q = engine.task_depth(sp, max(64, n))
        tasks = math.prod(sp.radices[:q])
        ranges = shard_jobs.even_ranges(tasks, n)
        run = secrets.token_hex(6)
        jobs = [
            {
                "run": run,
                "version": __version__,
                "kind": "count",
                "index": i,
                "settings": sp.settings,
                "for_search": False,
                "q": q,
                "range": list(r),
                "device": device,
                "threads": threads if pool.local_cluster is None else None,
                "per_task": False,
            }
            for i, r in enumerate(ranges)
        ]
        total = engine.Stats(space_size=sp.size)
        count = 0
        t_run = time.perf_counter()
        for _, res in pool.run(shard_jobs.count_range, jobs):
            count += res["count"]
            shard_jobs.add_stats(total, res["stats"])
            if progress is not None:
                progress(
                    engine.Progress(
                        "count",
                        min(1.0, total.covered / max(sp.size, 1)),
                        total.covered,
                        sp.size,
                        total.evaluated,
                        total.kept,
                        0,
                        time.perf_counter() - t_run,
                    )
                )
    finally:
        pool.close()
    why = f"{why}; walked on {pool.label} ({pool.workers} workers, {len(ranges)} ranges)"
    return counting.CountResult(
        count, sp.size, "enumerate", why, time.perf_counter() - t0, total.device, total.evaluated
    )


def shards_per_count(pool) -> int:
    return shard_jobs.RANGES_PER_WORKER * pool.workers


def count(space=None, **kwargs: Any) -> int:
    """Exact number of candidates meeting the constraints, the enumeration spread over a cluster (see
    :func:`count_details`)."""
    return count_details(space, **kwargs).count


__all__ = ["DaskPool", "InProcess", "connect", "count", "count_details", "parse_cluster", "search_to_dataset"]
