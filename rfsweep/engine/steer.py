"""Long runs a user can steer: Ctrl-C (and SIGTERM, SIGHUP) stops any kernel within a second, and the
progress of a run is reported while it lasts.

The kernels run in one worker thread while the main thread waits in short slices, so a signal is
handled at once (CPython runs signal handlers in the main thread only, and never inside a long native
call). The handler raises :class:`Interrupted` where that is safe, or, inside a :func:`steering`
section (a kernel call, a Parquet write), raises the stop flag the kernels poll every few thousand
nodes (``ctl[CTL_STOP]``) and lets the section stop at its next check; the callers' ``finally``
blocks then remove what they were writing. A second signal interrupts at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

POLL_SECONDS = 0.05  # the main thread's slice while a kernel runs: signal latency and progress cadence
GRACE_SECONDS = 1.0  # after a signal, how long to wait for the kernel thread before giving up on it
CTL_STOP, CTL_CAP, NCTL = 0, 1, 2  # the kernels' layout of the control array (kernels/layer_math.py, tested equal)
SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; the CLI exits with 128 + the signal number (130 for Ctrl-C)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    ctl = None  # the stop-flag array every kernel call shares (numpy is imported on first use)
    pending: int | None = None  # the signal received and not yet acted on
    sections = 0  # > 0 inside steering(): the handler only raises the flag
    worker = None


def control():
    """The control array (int64) to hand to a kernel: ``ctl[CTL_STOP]`` raised means stop; ``ctl[CTL_CAP]``
    > 0 caps each task's survivors (engine.iter_batches sets it for a --limit, and resets it)."""
    if _State.ctl is None:
        import numpy as np

        _State.ctl = np.zeros(NCTL, np.int64)
    return _State.ctl


def _raise_flag() -> None:
    control()[CTL_STOP] = 1


def _handler(signum, frame):
    first = _State.pending is None
    _State.pending = signum
    _raise_flag()
    if _State.sections == 0 or not first:
        # cleared only where Interrupted is caught for good (check(), the CLI): if a foreign callback
        # swallows this exception, the signal is still pending at the next check
        raise Interrupted(signum)


def _unraisable(hook):
    """sys.unraisablehook that keeps quiet about an :class:`Interrupted` a foreign callback swallowed (a
    ctypes callback cannot pass an exception on: it prints "Exception ignored on calling ctypes callback").
    Nothing is lost: the signal stays pending and :func:`check` raises it at the command's next check, at
    the latest when the command returns (rfsweep.cli.base.friendly)."""

    def quiet(info):
        if isinstance(info.exc_value, Interrupted):
            return
        hook(info)

    return quiet


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to the stop flag for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for s in SIGNALS:
        try:
            old[s] = signal.signal(s, _handler)
        except (ValueError, OSError):  # not settable here (an embedded interpreter)
            pass
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Signals inside raise the stop flag and wait for :func:`check` instead of raising at once (used as is
    around waits that must not be cut short, e.g. for the Parquet writer thread). Nothing is cleared, on
    the way in or out: a kernel that outlived GRACE_SECONDS (still loading or compiling when the signal
    came) must still find the stop flag up when it starts, or it walks its whole space while the
    interpreter waits for it at exit."""
    _State.sections += 1
    try:
        yield
    finally:
        _State.sections -= 1


@contextlib.contextmanager
def steering() -> Iterator[None]:
    """A section that polls :func:`check` (:func:`deferred`); the outermost one starts a run, so it clears
    the flags of the last (the next run's entry is where they are cleared)."""
    if _State.sections == 0:
        worker = _State.worker
        if worker is not None and worker.busy():
            # a call interrupted earlier still winds down (its threads between two looks at the flag, or a
            # compile): clearing the flag now would let it walk on, and this run would queue behind it
            _raise_flag()
            worker.wait_idle()
        _State.pending = None
        control()[:] = 0
    with deferred():
        yield


def clear() -> None:
    """Forget a signal that has been acted on (the CLI, when it exits with the signal's code)."""
    _State.pending = None


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived (call between units of work)."""
    if _State.pending is not None:
        signum, _State.pending = _State.pending, None
        raise Interrupted(signum)


class _Worker:
    """One persistent daemon thread for kernel calls: numba's OpenMP team is created once and reused, and
    a call still compiling when a signal comes (the first run after an install) never holds up exit."""

    def __init__(self):
        self.jobs: queue.Queue = queue.Queue()
        self.unfinished = 0  # calls submitted and not yet returned
        self.changed = threading.Condition()
        threading.Thread(target=self._loop, name="rfsweep-kernels", daemon=True).start()

    def _loop(self):
        while True:
            fn, args, box, done = self.jobs.get()
            try:
                box["result"] = fn(*args)
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            with self.changed:
                self.unfinished -= 1
                self.changed.notify_all()
            done.set()

    def submit(self, fn, args) -> tuple[dict, threading.Event]:
        box: dict = {}
        done = threading.Event()
        with self.changed:
            self.unfinished += 1
        self.jobs.put((fn, args, box, done))
        return box, done

    def busy(self) -> bool:
        return self.unfinished > 0

    def wait_idle(self) -> None:
        """Until every submitted call has returned (they return within a few thousand nodes of a raised
        stop flag; a call still compiling, when it starts its walk)."""
        with self.changed:
            while not self.changed.wait_for(lambda: self.unfinished == 0, timeout=POLL_SECONDS):
                pass  # short slices: a signal is handled meanwhile


def _worker() -> _Worker:
    if _State.worker is None:
        _State.worker = _Worker()
    return _State.worker


_compile_noted = False


def note_compile(fn: Callable[..., Any]) -> None:
    """Say on stderr (logger 'rfsweep', once a process) that a kernel is about to be compiled: one that
    numba has neither compiled in this process nor cached on disk. The first run after an install
    compiles for seconds to tens of seconds (benchmarks/README.md, bench_cold.py); later runs load the
    cache in milliseconds and say nothing."""
    global _compile_noted
    overloads = getattr(fn, "overloads", None)
    if _compile_noted or overloads is None or overloads:
        return
    try:
        cached = os.path.exists(fn._cache._cache_file._index_path)
    except AttributeError:  # not a cached dispatcher, or numba's cache internals moved: say nothing
        return
    if not cached:
        import logging

        _compile_noted = True
        logging.getLogger("rfsweep").info(
            "compiling the numba kernels this command needs (first run after an install only; "
            "up to a minute on 2 cores)..."
        )


def call(fn: Callable[..., Any], *args: Any, threads: int | None = None, tick: Callable[[], None] | None = None):
    """``fn(*args)`` in the kernel thread, the main thread polling signals (and ``tick``) meanwhile.

    numba's thread count and chunk size are per calling thread, so they are set in the kernel thread:
    ``threads`` (default: all) and dynamic scheduling (chunk size 1; subtrees differ in size by orders
    of magnitude, and a static split left one of two cores idle for most of the R7 count).
    On a signal the stop flag is raised and the walk returns within a few thousand nodes; a call that
    is still compiling is left to finish in the background (at most ``GRACE_SECONDS`` are waited).
    """

    def run():
        import numba

        numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
        numba.set_parallel_chunksize(1)
        return fn(*args)

    note_compile(fn)
    with steering():
        box, done = _worker().submit(run, ())
        try:
            while not done.wait(POLL_SECONDS):
                if tick is not None:
                    tick()
                check()
        except BaseException:
            _raise_flag()  # the kernel returns within a few thousand nodes
            done.wait(GRACE_SECONDS)
            raise
        check()  # a signal during the last slice: the result is partial
        if "error" in box:
            raise box["error"]
        return box["result"]


class Progress:
    """One status line on stderr, redrawn in place every ``every`` seconds by a ticker thread.

    :meth:`update` hands it the newest text, or a function of the elapsed seconds (so the ETA moves on
    while the main thread is busy elsewhere, e.g. waiting on the Parquet writer). Silent unless stderr
    is a terminal (``enabled``): pipes and logs get no control characters.
    """

    def __init__(self, enabled: bool | None = None, every: float = 0.25, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.every = every
        self.t0 = time.monotonic()
        self.render: Callable[[float], str] | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.shown = False
        self.thread: threading.Thread | None = None

    def update(self, text: str | Callable[[float], str]) -> None:
        if not self.enabled:
            return
        self.render = text if callable(text) else (lambda elapsed, text=text: text)
        if self.thread is None:
            self.thread = threading.Thread(target=self._tick, name="rfsweep-progress", daemon=True)
            self.thread.start()

    def _tick(self) -> None:
        while True:
            self._draw()
            if self.stopped.wait(self.every):
                return

    def _draw(self) -> None:
        with self.lock:
            if self.render is None or self.stopped.is_set():
                return
            text = self.render(self.elapsed)
            self.stream.write("\r" + text[: _columns() - 1] + "\033[K")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        """Stop redrawing and clear the line (the summary that follows says it all)."""
        with self.lock:
            self.stopped.set()
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self.shown = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 100


def eta(elapsed: float, fraction: float) -> str:
    """Remaining time at the pace so far, as 'ETA 1:23' ('ETA ?' before any progress)."""
    if fraction <= 0:
        return "ETA ?"
    left = max(0.0, elapsed * (1 - fraction) / fraction)
    if left >= 3600:
        return f"ETA {int(left // 3600)}h{int(left % 3600 // 60):02d}m"
    return f"ETA {int(left // 60)}:{int(left % 60):02d}"


__all__ = ["Interrupted", "Progress", "call", "check", "control", "eta", "handle_signals", "steering"]
