"""Reading jobs files of each format into data and the line of each job: YAML and JSON
(line numbers from the YAML parser), JSON Lines and CSV (every bad line reported at once)."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from .problems import JobProblem, JobsFileError

__all__ = ["csv_value", "read_csv", "read_jsonl", "yaml_lines"]

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")


def yaml_lines(text: str) -> dict[str, Any]:
    """Lines of the jobs in a YAML or JSON text: ``{"list": [line of job 1, ...]}``."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # JSON that YAML cannot read: no line numbers, that is all
        return {}
    found: dict[str, Any] = {}
    seq = root
    if isinstance(root, yaml.MappingNode):
        seq = None
        for key, value in root.value:
            if key.value == "jobs":
                seq = value
    if isinstance(seq, yaml.SequenceNode):
        found["list"] = [item.start_mark.line + 1 for item in seq.value]
    return found


def read_jsonl(text: str, source: str | None) -> tuple[list[Any], list[int]]:
    """The jobs of a JSON Lines text and their line numbers; every bad line at once."""
    items: list[Any] = []
    lines: list[int] = []
    problems: list[JobProblem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        try:
            items.append(json.loads(raw))
        except json.JSONDecodeError as exc:
            problems.append(JobProblem(f"invalid JSON: {exc.msg}", source, line=number))
            items.append(None)
        lines.append(number)
    if problems:
        raise JobsFileError(problems)
    return items, lines


def csv_value(text: str) -> Any:
    """A CSV cell as the value it spells: ``1080`` is 1080, ``true`` is True, else the text."""
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    return text


def read_csv(text: str, source: str | None) -> tuple[list[Any], list[int]]:
    """The jobs of a CSV text (a header row, then a job a row) and their line numbers."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise JobsFileError([JobProblem(f"invalid CSV: {exc}", source, line=1)]) from None
    columns = [h.strip() for h in header]
    problems = [
        JobProblem(f"column {n} has no name", source, line=1)
        for n, h in enumerate(columns, 1)
        if not h
    ]
    seen: set[str] = set()
    for name in columns:
        if name and name in seen:
            problems.append(JobProblem(f"column {name!r} appears twice", source, line=1))
        seen.add(name)
    items: list[Any] = []
    lines: list[int] = []
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(JobProblem(f"invalid CSV: {exc}", source, line=reader.line_num))
            break
        if not any(cell.strip() for cell in row):
            start = reader.line_num + 1
            continue
        if len(row) > len(columns):
            problems.append(
                JobProblem(f"{len(row)} cells but only {len(columns)} columns", source, line=start)
            )
        job: dict[str, Any] = {}
        for column, cell in zip(columns, row):
            if column and cell.strip() != "":
                # Prompts stay text even when they look like numbers; other cells are typed.
                text_column = column in {"prompt", "negative_prompt", "name", "generator"}
                job[column] = cell if text_column else csv_value(cell.strip())
        items.append(job)
        lines.append(start)
        start = reader.line_num + 1
    if problems:
        raise JobsFileError(problems)
    return items, lines


# -- checking jobs ---------------------------------------------------------------------------
