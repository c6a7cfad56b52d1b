"""What every ``icecube-cloud`` command shares: progress bars, logging, warnings and exit codes.

SPEC §5: exit codes 0 success, 2 bad usage or config, 1 data or runtime error; errors print one clear
line naming the file, item or key, and ``--verbose`` shows logs and the traceback. :func:`command` gives
a click command all of that once. This module and :mod:`icecube_cloud.cli` are the only ones that print.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import click

from icecube_cloud.errors import IcecubeError, IcecubeWarning
from icecube_cloud.progress import PlainLines, Reporter, RichBars


class CliProgress(Reporter):
    """Draws progress on stderr: ``rich`` bars on a terminal, plain lines otherwise, nothing if quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._draw: Reporter = Reporter() if quiet else RichBars() if self.tty else PlainLines()
        self.wants_bytes = self._draw.wants_bytes

    def __call__(self, stage: str, done: int, total: int, *, nbytes: int | None = None) -> None:
        """Report ``done`` of ``total`` for ``stage`` (``nbytes``: bytes done, where known)."""
        self._draw(stage, done, total, nbytes=nbytes)

    def close(self) -> None:
        """Stop a bar still drawn, before an error line or the end of the command."""
        self._draw.close()


def storage_options() -> Mapping[str, Any]:
    """Storage options from the environment: ``AWS_ENDPOINT_URL`` and credentials as s3fs finds them.

    Credentials are resolved here, once, so that dask workers that do not share this environment can
    reach the bucket; the returned value never prints them.
    """
    from icecube_cloud.storage import storage_options_from_env

    return storage_options_from_env()


def run_guarded(fn: Callable[[], None], verbose: bool) -> None:
    """Run a command body: its errors become one ``error:`` line and their exit code."""
    try:
        fn()
    except IcecubeError as err:
        if verbose:
            logging.getLogger(__name__).exception("failed")
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "interrupted; nothing was published. Rerun the same command to resume.", err=True
        )
        sys.exit(130)


class _WarningLines(logging.Handler):
    """Prints each Python warning as one ``warning: <message>`` line on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def route_warnings(verbose: bool) -> None:
    """Python warnings go through logging (``py.warnings``) as one clean line each, icecube's once.

    Not the raw ``<file>:<line>: <Category>: <message>`` text; ``--verbose`` adds class and source.
    """
    log = logging.getLogger("py.warnings")
    log.propagate = False
    if not any(isinstance(h, _WarningLines) for h in log.handlers):
        log.addHandler(_WarningLines())

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        where = f" ({category.__name__} at {filename}:{lineno})" if verbose else ""
        log.warning("%s%s", message, where)

    warnings.showwarning = show
    warnings.filterwarnings("once", category=IcecubeWarning)


def setup_logging(verbose: bool) -> None:
    """Log at INFO with ``--verbose``, else WARNING, with dask's own loggers kept quiet."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    route_warnings(verbose)
    if not verbose:
        # dask.distributed configures its own INFO-level loggers on import; keep the CLI output clean.
        import distributed  # noqa: F401

        # CRITICAL: an interrupted build's teardown makes dask log errors that are not the user's.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)


def command(fn: Callable[..., None]) -> Callable[..., None]:
    """Turn ``fn`` into a command body with ``--quiet``/``--verbose`` and the exit-code contract.

    ``fn`` receives the command's parameters and ``progress`` (a :class:`CliProgress`, silent with
    ``--quiet``); its :class:`IcecubeError` becomes one ``error:`` line and the error's exit code.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, quiet: bool, verbose: bool, **kwargs: Any) -> None:
        setup_logging(verbose)
        progress = CliProgress(quiet)

        def body() -> None:
            try:
                fn(*args, progress=progress, **kwargs)
            finally:
                progress.close()

        run_guarded(body, verbose)

    wrapper = click.option("--quiet", "-q", is_flag=True, help="No progress output.")(wrapper)
    return click.option("--verbose", "-v", is_flag=True, help="Log details and tracebacks.")(
        wrapper
    )
