"""The errors degrees37-imagegen raises.

Every error is a :class:`GeneratorError`, so one ``except GeneratorError`` catches them all.
The subclasses also derive from the built-in exception they resemble, so generic handlers
(``except TimeoutError``, ``except ValueError``) keep working::

    GeneratorError
    ├── GeneratorConnectionError      (also ConnectionError) server unreachable or dropped
    ├── GeneratorTimeoutError         (also TimeoutError)    no result within the time allowed
    ├── GeneratorLimitError           rate limit or full queue; carries ``retry_after``
    ├── ServerError                   the server answered with an error; ``status``, ``body``
    ├── AuthenticationError           (also PermissionError) the server refused our credentials
    ├── JobFailedError                the job ran on the server and failed there
    ├── JobCanceledError              the job was canceled before it finished
    ├── IncompleteImageError          a download arrived truncated or corrupt
    ├── PluginError                   a plugin raised something that is not a GeneratorError
    ├── GeneratorNotFoundError        (also LookupError)     unknown generator name
    ├── InvalidRequestError           (also ValueError)      bad prompt, size, sampler...
    ├── OutputError                   (also OSError)         the image cannot be written there
    └── ConfigError                   (also ValueError)      bad configuration; names file and key

Only connection, timeout and limit errors are worth retrying (see :func:`retry_with_backoff`);
everything else fails the same way the next time.

Every error may say whether the work it concerns may exist on a server (``work``: see
:data:`Work`), so that retries and failover decide from data rather than from the class.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "JobCanceledError",
    "JobFailedError",
    "IncompleteImageError",
    "PluginError",
    "ServerError",
    "Work",
    "GeneratorConnectionError",
    "GeneratorError",
    "GeneratorLimitError",
    "GeneratorNotFoundError",
    "GeneratorTimeoutError",
    "InvalidRequestError",
    "OutputError",
    "RETRYABLE_ERRORS",
]


#: Whether the work an error concerns may exist on a server:
#:
#: - ``"not_sent"``: the request never reached the server; sending it again (anywhere) is safe;
#: - ``"unknown"``: it may have reached the server (the answer was lost);
#: - ``"queued"``: the server accepted it and it is still there (queued or running);
#: - ``"ran"``: it ran on the server and failed there (or finished).
Work = Literal["not_sent", "unknown", "queued", "ran"]


class GeneratorError(Exception):
    """Base class of every error raised by a generator, the registry or the configuration.

    ``generator`` names the generator entry the error came from (the core fills it in where
    a plugin left it out); ``work`` says whether the work may exist on a server (:data:`Work`,
    ``None`` when it does not apply or is not known).
    """

    def __init__(
        self, message: str, *, generator: str | None = None, work: Work | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.generator = generator
        self.work: Work | None = work

    def __str__(self) -> str:
        return self.message


class GeneratorConnectionError(GeneratorError, ConnectionError):
    """The server could not be reached, refused the connection, or dropped it."""


class GeneratorTimeoutError(GeneratorError, TimeoutError):
    """The server did not answer, or did not finish the image, within the time allowed."""


class GeneratorLimitError(GeneratorError):
    """The server refused the work for now (rate limit, full queue, quota).

    ``retry_after`` is the number of seconds the server asked us to wait, or ``None``.
    """

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        generator: str | None = None,
        work: Work | None = None,
    ) -> None:
        super().__init__(message, generator=generator, work=work)
        self.retry_after = retry_after


class ServerError(GeneratorError):
    """The server answered a request with an error status.

    ``status`` is the HTTP status (or ``None`` for a protocol without one); ``body`` the
    start of what the server said, secrets hidden.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        generator: str | None = None,
        work: Work | None = None,
    ) -> None:
        super().__init__(message, generator=generator, work=work)
        self.status = status
        self.body = body


class AuthenticationError(ServerError, PermissionError):
    """The server refused our credentials (HTTP 401/403, a bad API key or token)."""


class JobFailedError(GeneratorError):
    """The job ran on the server and failed there: retrying it gives the same failure.

    ``job_id`` is the server's id of the job; ``error_type`` and ``error_message`` are what
    the server said (an exception class name and its text, a node's error...).
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        generator: str | None = None,
    ) -> None:
        super().__init__(message, generator=generator, work="ran")
        self.job_id = job_id
        self.error_type = error_type
        self.error_message = error_message


class JobCanceledError(GeneratorError):
    """The job was canceled (by us or on the server) before it finished."""


class IncompleteImageError(GeneratorError):
    """The image received is not whole (a truncated or corrupt download); fetching it again
    may help, generating it again is not needed."""


class PluginError(GeneratorError):
    """A generator plugin raised an exception that is not a :class:`GeneratorError`.

    The message names the generator, the distribution that provides it and the original
    exception in one line; the original is the ``__cause__``.
    """


class GeneratorNotFoundError(GeneratorError, LookupError):
    """No generator (configured entry or installed plugin) has the requested name."""

    def __init__(self, name: str, available: Iterable[str], hint: str | None = None) -> None:
        self.name = name
        self.available = sorted(set(available))
        names = ", ".join(self.available) or "none (no generator plugin is installed)"
        message = f"unknown generator {name!r}; available: {names}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class InvalidRequestError(GeneratorError, ValueError):
    """The request itself is wrong (size, sampler, preset...): retrying cannot help."""


class OutputError(GeneratorError, OSError):
    """An image cannot be written to its output path (a folder, not writable, no such place).

    ``path`` is the output path that was asked for.
    """

    def __init__(self, message: str, path: str | Path) -> None:
        super().__init__(message)
        self.path = Path(path)


class ConfigError(GeneratorError, ValueError):
    """A configuration problem, naming the file, the key path and the problem.

    ``str()`` gives one line such as
    ``config/generators.yaml:7: generators.mock.fail_rate: must be between 0 and 1 (got 2)``.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
        generator: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        self.key = key
        self.line = line
        super().__init__(self._format(), generator=generator)

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        if self.key:
            where += f"{self.key}: "
        return where + self.problem

    def located(
        self,
        *,
        path: str | Path | None = None,
        key_prefix: str | None = None,
        line: int | None = None,
    ) -> ConfigError:
        """Return a copy that also names the file and the enclosing key path."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return ConfigError(
            self.problem,
            path=path if path is not None else self.path,
            key=key,
            line=line if line is not None else self.line,
            generator=self.generator,
        )


#: The errors that :func:`retry_with_backoff` retries by default.
RETRYABLE_ERRORS: tuple[type[GeneratorError], ...] = (
    GeneratorConnectionError,
    GeneratorTimeoutError,
    GeneratorLimitError,
)
