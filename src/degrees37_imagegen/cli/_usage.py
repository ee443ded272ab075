"""Command-line mistakes as one line: ``error: --width/-W: 'abc' is not a whole number``.

click (which typer runs on) answers a bad option value, an unknown option or command and a
missing argument with the usage, a hint and a boxed message. :class:`OneLineGroup`, the
group ``imagegen`` runs as, says the same in one ``error:`` line on stderr and exits 2;
``--help`` and ``--version`` are untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from ._errors import EXIT_INTERRUPTED, EXIT_USAGE, echo_err

__all__ = ["OneLineGroup", "usage_line"]


def _click_class(name: str) -> type[Exception]:
    """A class of click's exceptions: typer >= 0.2x carries its own click, older typers use
    the ``click`` package; ``typer.BadParameter`` derives from the one in use."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name)


_CLICK_EXCEPTION = _click_class("ClickException")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _param_name(param: Any) -> str:
    """``--width/-W`` for an option, ``PROMPT`` for an argument."""
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.metavar or (param.name or "").upper())
    opts = [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]
    return "/".join(opts) or str(param.name)


def _value_problem(exc: Any) -> str:
    """What is wrong with a bad value, in words: typer's (pydantic's) message names no
    value, so the common cases are said again with it."""
    message = str(getattr(exc, "message", exc))
    errors = getattr(exc.__cause__, "errors", None)
    found = errors() if callable(errors) else None
    if not found:
        return _lower_first(message.strip().rstrip("."))
    first = found[0]
    value, kind, limits = first.get("input"), first.get("type"), first.get("ctx") or {}
    said = {
        "int_parsing": f"{value!r} is not a whole number",
        "int_from_float": f"{value!r} is not a whole number",
        "float_parsing": f"{value!r} is not a number",
        "bool_parsing": f"{value!r} is not true or false",
        "greater_than_equal": f"must be at least {limits.get('ge')}, got {value}",
        "greater_than": f"must be more than {limits.get('gt')}, got {value}",
        "less_than_equal": f"must be at most {limits.get('le')}, got {value}",
        "less_than": f"must be less than {limits.get('lt')}, got {value}",
    }
    return said.get(str(kind), f"{value!r}: {_lower_first(message.rstrip('.'))}")


def usage_line(exc: Exception) -> str:
    """The one line (without ``error:``) that says what ``exc``, a click exception, means.

    A bad value names the option and the value; an unknown option or command and a missing
    argument point at the command's ``--help``.
    """
    param = getattr(exc, "param", None)
    ctx = getattr(exc, "ctx", None)
    kind = type(exc).__name__
    if kind == "BadParameter" and param is not None:
        text = f"{_param_name(param)}: {_value_problem(exc)}"
    else:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        text = _lower_first(" ".join(message.split()).rstrip("."))
    if ctx is not None and kind != "BadParameter":
        text += f" (see '{ctx.command_path} --help')"
    return text


class OneLineGroup(TyperGroup):
    """The ``imagegen`` group: every command-line mistake is one ``error:`` line, exit 2.

    Runs click in non-standalone mode and reports what it raises itself: a usage error
    (bad value, unknown option or command, missing argument) as one line with exit 2,
    click's abort (Ctrl-C in a prompt) as ``interrupted`` with exit 130. Called with
    ``standalone_mode=False`` it behaves as click does.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exits (``SystemExit``) unless ``standalone_mode`` is false."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _CLICK_EXCEPTION as exc:
            _fail(exc)
        except typer.Abort:
            echo_err("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        # Our commands return None: an int here is the code of a typer.Exit they raised.
        sys.exit(code if isinstance(code, int) else 0)


def _fail(exc: Exception) -> NoReturn:
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare ``imagegen``: the help, as before
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        sys.exit(EXIT_USAGE)
    echo_err(f"error: {usage_line(exc)}")
    sys.exit(EXIT_USAGE)
