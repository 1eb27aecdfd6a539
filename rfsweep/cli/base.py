"""What every rfsweep command shares: one-line errors with exit code 2, Ctrl-C as exit code 130, and the
library's notes on stderr."""

from __future__ import annotations

import contextlib
import functools
import sys

import click

from rfsweep.core.errors import RFSweepError


def friendly(fn):
    """Run a command with signals routed to the stop flag (rfsweep.engine.steer): RFSweepError becomes one line on
    stderr and exit code 2; Ctrl-C exit code 130, SIGTERM 143, SIGHUP 129, each after the command's
    cleanup (no temporary file is left) and with one line, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from rfsweep.engine import steer

        steer.clear()  # a signal left from before this command (library use in the same process) is not its
        try:
            with steer.handle_signals(), _notes(not kwargs.get("quiet")):
                result = fn(*args, **kwargs)
                steer.check()  # a signal a foreign callback swallowed still ends the command
                return result
        except RFSweepError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except steer.Interrupted as exc:
            steer.clear()
            click.echo("interrupted" if exc.signum == 2 else f"stopped by signal {exc.signum}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            steer.clear()
            click.echo("interrupted", err=True)
            sys.exit(130)
        except RecursionError:
            click.echo("error: the input is nested too deeply to be read", err=True)
            sys.exit(2)
        except OSError as exc:
            _output_failed(exc)

    return wrapper


@contextlib.contextmanager
def _notes(enabled: bool):
    """The library's notes (logger 'rfsweep': a first-run compile, ...) on stderr, or none under -q."""
    import logging

    log = logging.getLogger("rfsweep")
    level = log.level
    if not enabled:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _output_failed(exc: OSError) -> None:
    """A write to stdout or stderr that failed. A closed pipe (``| head``) ends quietly, as coreutils do
    (exit 141, the shell's code for SIGPIPE); a full disk or an I/O error is one line on stderr and exit 1.
    Other OSErrors are not about the output: raised again."""
    import errno
    import os

    if exc.errno == errno.EPIPE:
        with contextlib.suppress(OSError, ValueError):  # later flushes go nowhere instead of failing again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    if exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
        with contextlib.suppress(OSError, ValueError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the buffered rest must not be flushed again)
        with contextlib.suppress(OSError, ValueError):
            click.echo(f"error: cannot write the output ({os.strerror(exc.errno)})", err=True)
        sys.exit(1)
    raise exc


class OneLineErrors(click.Group):
    """Usage errors (a bad choice, a non-integer, a missing argument) as one line, exit code 2.

    click prints usage, a hint and the message over several lines; rfsweep's promise is one line that
    names the field and the value, the same as for errors found past parsing.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)


class Text(click.ParamType):
    """A value handed on as text to the parser that owns it (rfsweep.space.settings: ``5e6`` and ``1_000``
    are integers there, and a bad value is one line naming the setting), shown in --help by its kind:
    ``INTEGER``, ``FLOAT``, ``N|HxW``, ..."""

    def __init__(self, name: str):
        self.name = name

    def get_metavar(self, param, ctx=None) -> str:
        return self.name

    def convert(self, value, param, ctx):
        return value


def shown(help_text: str, default: str | None = None, bounds: str | None = None) -> str:
    """``help [default: D; BOUNDS]``, as click writes the default and range of its own types."""
    extra = "; ".join(x for x in ((f"default: {default}" if default else None), bounds) if x)
    return help_text + (f"  [{extra}]" if extra else "")


def diagnostics_to_stderr() -> None:
    """The library's notes (logger 'rfsweep', e.g. a first-run compile) go to stderr as plain lines."""
    import logging

    class ToStderr(logging.Handler):
        def emit(self, record):  # the stream of the moment (tests swap it per invocation)
            click.echo(record.getMessage(), err=True)

    log = logging.getLogger("rfsweep")
    if not any(isinstance(h, ToStderr) or type(h).__name__ == "ToStderr" for h in log.handlers):
        log.addHandler(ToStderr())
        log.setLevel(logging.INFO)
