"""What can be wrong in a jobs file: :class:`JobProblem` and :class:`JobsFileError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidRequestError

__all__ = ["JobProblem", "JobsFileError"]


@dataclass(frozen=True)
class JobProblem:
    """One thing wrong in a jobs file; ``str()`` gives one line naming the file, job and line."""

    message: str
    source: str | None = None
    index: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if self.index is not None:
            where += f"job {self.index}"
            if self.line is not None:
                where += f" (line {self.line})"
            where += ": "
        elif self.line is not None:
            where = f"{self.source}:{self.line}: " if self.source else f"line {self.line}: "
        return where + self.message


class JobsFileError(InvalidRequestError):
    """A jobs file has problems; ``problems`` lists every one (``str()``: one per line)."""

    def __init__(self, problems: Sequence[JobProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
