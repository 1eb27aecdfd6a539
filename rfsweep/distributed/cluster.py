"""Where a sharded sweep's jobs run: a Dask cluster (a LocalCluster of N processes here, or a running one
reached through its scheduler), or this process; and ``rfsweep count --method enumerate`` on a cluster.

>>> import rfsweep
>>> rfsweep.search_to_parquet("r7", depth=7, rf_min=200, rf_max=250, cluster="local:2")  # doctest: +SKIP
>>> from rfsweep.distributed import cluster
>>> cluster.count(depth=7, rf_min=200, max_params=10**6, scheduler="tcp://head:8786")  # doctest: +SKIP

The cluster layer only plans, submits, retries and merges; it never computes a metric (the plan and the
merges are in :mod:`rfsweep.distributed.sharded`, the jobs in :mod:`rfsweep.distributed.shards`). Each job
is one Dask task,
submitted earlier shards first; results come back as shards finish (``as_completed``), which drives the
progress line on stderr. A shard whose worker dies is run again elsewhere (the scheduler reschedules it;
a part appears only when complete, so a rerun is harmless), and a shard that raises is retried twice.
On Ctrl-C, an error or an early stop the client cancels what has not started and stops what runs (the
jobs look at a stop flag several times a second and remove their temporary parts).

Workers: one Dask thread each (each kernel call already uses every numba thread of its process: numba's
workqueue layer aborts under concurrent calls, and omp would oversubscribe), ``NUMBA_NUM_THREADS`` set
before numba loads (``local:N`` sets it to cores / N through the nanny's environment; a running cluster's
workers take it from theirs), kernels warmed on every worker before the shards start, and a worker of
another rfsweep version refused. dask is imported only here, and only when a cluster is asked for.
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

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.distributed import shards as shard_jobs
from rfsweep.engine import run as engine
from rfsweep.engine import steer

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
            self.seen = max(self.seen, len(self.client.scheduler_info()["workers"]))
        return self.seen

    def prepare(self, columns: str, device: str) -> None:
        """Refuse workers of another rfsweep version; load the kernels on every worker."""
        from rfsweep.core.version import __version__

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
                allow_other_workers=True,  # a worker gone meanwhile must not leave this waiting for it
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
        # results come with their futures, fetched by the client as each shard finishes, and every future
        # is released at once: a worker that dies later then holds nothing the scheduler would recompute.
        # The futures are tracked on this client's own loop: as_completed otherwise takes the loop of the
        # *current* client (a `with Client(...)` of the caller's), which fetched this client's results on
        # the wrong thread (measured, distributed 2026.8: "Event is bound to a different event loop", or a
        # tornado AssertionError that lost the shard's result and left the run waiting for ever)
        pending = as_completed(
            [f for f, _ in futures.values()], loop=self.client.loop, with_results=True, raise_errors=False
        )
        finished = False
        try:
            with steer.steering():
                while not pending.is_empty():
                    ready = pending.next_batch(block=False)
                    if not ready:
                        steer.check()
                        time.sleep(POLL_SECONDS)
                        continue
                    for fut, result in ready:
                        _, job = futures.pop(fut.key)
                        fut.release()
                        yield job, self._result(result, job)
                    steer.check()
            finished = True
        finally:
            if not finished:
                self.stop(run, [f for f, _ in futures.values()])

    def _result(self, result, job: dict) -> dict:
        """A shard's result, or its failure as one line. Judged by what came back, not by the future's
        status now: a worker that dies after the result was fetched marks the future lost (measured)."""
        if isinstance(result, dict):
            return result
        from distributed.scheduler import KilledWorker
        from distributed.utils import CancelledError

        exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result  # (type, exc, tb)
        status = "cancelled" if isinstance(exc, CancelledError) else "failed"
        if isinstance(exc, RFSweepError):
            raise exc.with_traceback(None)

        what = f"{job['kind']} job {job['index']} (first-cut tasks {job['range'][0]}..{job['range'][1] - 1})"
        if isinstance(exc, KilledWorker):
            raise field_error(
                self.fieldname,
                self.label,
                f"{what}: every worker that ran it died (distributed.scheduler.allowed-failures); "
                "see the workers' logs (out of memory?)",
            )
        raise field_error(self.fieldname, self.label, f"{what} {status}: {shard_jobs.errors_in(exc)}")

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


@contextlib.contextmanager
def _workers_ignore_interrupts():
    """Start local worker processes with SIGINT ignored (inherited through spawn): Ctrl-C on a terminal
    reaches the whole process group, and the client alone must handle it (stop the shards, remove their
    temporary parts, one line); the workers otherwise die with a KeyboardInterrupt traceback each."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _ignore_interrupts_plugin():
    """The same for local workers the nanny restarts later (a killed worker): a worker plugin, run in
    each worker process's main thread when it starts."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        name = "rfsweep-ignore-sigint"

        def setup(self, worker):
            import signal
            import threading

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupts()


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
        import dask

        try:
            # distributed sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which turns off glibc's adaptive
            # mmap threshold: every slab-sized array became a fresh mapping, faulted in page by page
            # (measured on R7 [200, 250], local:2: 4.9M minor faults and 9.8 s of system time a worker;
            # without it 0.18M and 2.4 s, and 28% less CPU in all)
            trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
            with _workers_ignore_interrupts(), dask.config.set(trim):
                lc = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    # no dashboard; the scheduler's HTTP endpoints on a free port (:8787 may be taken)
                    dashboard_address=":0",
                    # the workers' own log lines reach the user's stderr: a worker's heartbeat that meets the
                    # scheduler closing after Ctrl-C logged an ERROR with a traceback (seen under load in
                    # test_dask); rfsweep reports a failed shard itself, in one line
                    silence_logs=logging.CRITICAL,
                    # set in each worker process before anything imports numba (Nanny env)
                    env={"NUMBA_NUM_THREADS": str(per), "OMP_NUM_THREADS": str(per)},
                )
            client = Client(lc)
            client.register_plugin(_ignore_interrupts_plugin())
            return DaskPool(client, lc, fieldname, f"local:{n}")
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
    """:func:`rfsweep.engine.count.count_details` with the pruned enumeration spread over a cluster: the first-cut
    tasks in ``shards`` even ranges (default 16 a worker), each walked by one worker, the counts added.
    ``method="auto"`` or ``"dp"`` answer by the counting programme here when it can (milliseconds); the
    cluster walks only what needs enumerating."""
    from rfsweep.core.version import __version__
    from rfsweep.engine import count as counting

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


__all__ = ["DaskPool", "InProcess", "connect", "count", "count_details", "parse_cluster", "pool_for"]
