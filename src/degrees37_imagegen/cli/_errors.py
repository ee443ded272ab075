"""Turning errors and warnings into one clear line on stderr and the right exit code."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import typer

from ..errors import (
    ConfigError,
    GeneratorError,
    GeneratorNotFoundError,
    InvalidRequestError,
    OutputError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "State",
    "cli_errors",
    "echo_err",
    "state",
]

EXIT_OK = 0
#: Generation failed (server error, timeout...).
EXIT_FAILED = 1
#: Usage or configuration error (unknown generator, invalid size, bad config file...).
EXIT_USAGE = 2
#: Interrupted (Ctrl-C), as shells report SIGINT.
EXIT_INTERRUPTED = 130
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130

#: Errors that are the user's to fix: exit 2, not 1.
USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    GeneratorNotFoundError,
    InvalidRequestError,
    OutputError,
)


class State:
    """Options of the top-level command, shared by the subcommands."""

    debug: bool = False


state = State()


def echo_err(message: str) -> None:
    """Print one line to stderr, with any secret in it hidden (a URL's password, a token)."""
    from ..redaction import redact_text

    typer.echo(redact_text(message), err=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if state.debug:
        echo_err(warnings.formatwarning(message, category, filename, lineno, line).rstrip())
    else:
        echo_err(f"warning: {message}")


class RedactingFilter(logging.Filter):
    """Hides secrets in log lines: httpx logs whole URLs, which may carry a password."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets hidden; never drops a record."""
        from ..redaction import redact_text

        record.msg = redact_text(record.getMessage())
        record.args = None
        return True


def setup(debug: bool) -> None:
    """Install the one-line warning format and, with ``--debug``, request logging."""
    state.debug = debug
    warnings.showwarning = _show_warning
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_imagegen", False)]:
        root.removeHandler(old)
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        handler._imagegen = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        # httpx logs each request's method, URL and status (never headers); httpcore's
        # connection-level chatter is noise.
        logging.getLogger("httpcore").setLevel(logging.INFO)


def exit_code_for(exc: BaseException) -> int:
    """``2`` for the user's mistakes, ``1`` for failed generation."""
    return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED


def _is_cli_control(exc: BaseException) -> bool:
    """``typer.Exit``, ``Abort``, ``BadParameter``...: the command line's own flow."""
    return any(cls.__module__.split(".")[0] in {"click", "typer"} for cls in type(exc).__mro__[:-2])


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Report an error as one ``error: ...`` line on stderr and exit with its code.

    A :class:`GeneratorError` (a plugin's own exception arrives as a
    :class:`~degrees37_imagegen.errors.PluginError`) exits 2 for the user's mistakes and 1
    otherwise; a file error exits 1; Ctrl-C exits 130; anything else is one line too, exit
    1. ``--debug`` prints the traceback first.
    """
    try:
        yield
    except GeneratorError as exc:
        if state.debug:
            traceback.print_exc()
        echo_err(f"error: {exc}")
        raise typer.Exit(exit_code_for(exc)) from None
    except OSError as exc:  # a file or folder the user named; never a traceback for that
        if state.debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        echo_err(f"error: {exc.strerror or exc}{where}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        echo_err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug (ours or a plugin's) outside the pipeline's choke point
        if _is_cli_control(exc):
            raise
        if state.debug:
            traceback.print_exc()
            echo_err(f"error: {type(exc).__name__}: {exc}")
        else:
            echo_err(
                f"error: {type(exc).__name__}: {exc} (imagegen --debug ... shows the traceback)"
            )
        raise typer.Exit(EXIT_FAILED) from None
