"""What can be wrong in a jobs file: :class:`JobProblem` and :class:`JobsFileError`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["JobProblem", "JobsFileError", "in_file_order"]


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


def in_file_order(problems: Iterable[JobProblem]) -> list[JobProblem]:
    """``problems`` in the order of the file: those of the whole file first, then by line
    (by job when lines are not known); the problems of one job keep their order."""

    def place(problem: JobProblem) -> tuple[int, int, int]:
        if problem.index is None and problem.line is None:
            return (0, 0, 0)
        return (1, problem.line or 0, problem.index or 0)

    return sorted(problems, key=place)


class JobsFileError(InvalidRequestError):
    """A jobs file has problems; ``problems`` lists every one in file order (``str()``: one
    per line). ``jobs`` holds the jobs that have none, so that a caller can check more of
    them (their generators...) and report everything at once."""

    def __init__(self, problems: Sequence[JobProblem], jobs: Sequence[Job] = ()) -> None:
        self.problems = in_file_order(problems)
        self.jobs: list[Job] = list(jobs)
        super().__init__("\n".join(str(p) for p in self.problems))
