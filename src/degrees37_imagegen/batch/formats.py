"""Reading jobs files of each format into data and the line of each job.

YAML (libyaml's parser when there is one; alias bombs refused), JSON (the ``json`` module;
lines found by a walk over the text), JSON Lines and CSV. JSON Lines and CSV report every
unreadable line and read on: an unreadable job's place holds :data:`UNREADABLE`, so that
the jobs after it keep their index and their own problems are reported too.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from .problems import JobProblem, JobsFileError

__all__ = [
    "UNREADABLE",
    "csv_value",
    "read_csv",
    "read_json",
    "read_jsonl",
    "read_yaml",
]

#: Stands for a job that could not be read (its problem is reported already).
UNREADABLE: Any = type("Unreadable", (), {"__repr__": lambda self: "UNREADABLE"})()

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")


def read_yaml(text: str, source: str | None) -> tuple[Any, list[int]]:
    """The data of a YAML text and the line of each job; :class:`JobsFileError` when the
    text is not YAML (or its aliases would expand it without end)."""
    import yaml

    from ..yamlfast import load_yaml

    try:
        data, root = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        raise JobsFileError([JobProblem(f"invalid YAML: {problem}", source, line=line)]) from None
    seq = root
    if isinstance(root, yaml.MappingNode):
        seq = None
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "jobs":
                seq = value
    if isinstance(seq, yaml.SequenceNode):
        return data, [item.start_mark.line + 1 for item in seq.value]
    return data, []


_SPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    """The position of the first character at or after ``pos`` that is not JSON space."""
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def read_json(text: str, source: str | None) -> tuple[Any, list[int]]:
    """The data of a JSON text and the line of each job; :class:`JobsFileError` naming the
    line of a syntax error."""
    try:
        return _json_with_lines(text)
    except (ValueError, IndexError):  # not JSON: the json module says where and why
        pass
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobsFileError(
            [JobProblem(f"invalid JSON: {exc.msg}", source, line=exc.lineno)]
        ) from None
    return data, []


def _json_with_lines(text: str) -> tuple[Any, list[int]]:
    """Decode a JSON text and note where each job starts: the items of the top-level list,
    or of the top-level object's ``jobs``. The walk covers only those two levels; every
    value is decoded by the C decoder, once. Raises ``ValueError`` on anything amiss."""
    decode = json.JSONDecoder().raw_decode
    lines: list[int] = []
    pos = _skip(text, 0)
    data: Any
    if text.startswith("{", pos):
        data = {}
        pos = _skip(text, pos + 1)
        while not text.startswith("}", pos):
            key, pos = decode(text, pos)
            pos = _skip(text, pos)
            if not isinstance(key, str) or not text.startswith(":", pos):
                raise ValueError("expected a key and ':'")
            pos = _skip(text, pos + 1)
            if key == "jobs" and text.startswith("[", pos):
                data[key], lines, pos = _json_list(text, pos, decode)
            else:
                data[key], pos = decode(text, pos)
            pos = _skip(text, pos)
            if text.startswith(",", pos):
                pos = _skip(text, pos + 1)
                if text.startswith("}", pos):
                    raise ValueError("a comma before '}'")
            elif not text.startswith("}", pos):
                raise ValueError("expected ',' or '}'")
        pos += 1
    elif text.startswith("[", pos):
        data, lines, pos = _json_list(text, pos, decode)
    else:
        data, pos = decode(text, pos)
    if _skip(text, pos) != len(text):
        raise ValueError("extra data")
    return data, lines


def _json_list(text: str, pos: int, decode: Any) -> tuple[list[Any], list[int], int]:
    """The list starting at ``pos``, the line of each item, and the position after it."""
    items: list[Any] = []
    lines: list[int] = []
    line, counted = 1, 0
    pos = _skip(text, pos + 1)
    while not text.startswith("]", pos):
        line += text.count("\n", counted, pos)
        counted = pos
        item, pos = decode(text, pos)
        items.append(item)
        lines.append(line)
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
            if text.startswith("]", pos):
                raise ValueError("a comma before ']'")
        elif not text.startswith("]", pos):
            raise ValueError("expected ',' or ']'")
    return items, lines, pos + 1


def read_jsonl(text: str, source: str | None) -> tuple[list[Any], list[int], list[JobProblem]]:
    """The jobs of a JSON Lines text, their line numbers, and a problem for each line that
    is not JSON (its job is :data:`UNREADABLE`)."""
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
            items.append(UNREADABLE)
        lines.append(number)
    return items, lines, problems


def csv_value(text: str) -> Any:
    """A CSV cell as the value it spells: ``1080`` is 1080, ``true`` is True, else the text."""
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    return text


def read_csv(text: str, source: str | None) -> tuple[list[Any], list[int], list[JobProblem]]:
    """The jobs of a CSV text (a header row, then a job a row), their line numbers, and
    every problem of its rows: a row that does not parse (a quote never closed, text after
    a closing quote) is one, and its job :data:`UNREADABLE`."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return [], [], []
    except csv.Error as exc:
        return [], [], [JobProblem(_csv_problem(exc, reader.line_num, 1), source, line=1)]
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
            problems.append(
                JobProblem(_csv_problem(exc, reader.line_num, start), source, line=start)
            )
            items.append(UNREADABLE)
            lines.append(start)
            start = reader.line_num + 1
            continue
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
    return items, lines, problems


def _csv_problem(exc: csv.Error, line_num: int, start: int) -> str:
    """What a ``csv.Error`` means, said for a person."""
    message = str(exc)
    if "unexpected end of data" in message:
        return "invalid CSV: a quoted cell starts on this line and its closing quote never comes"
    if "expected after" in message:
        return 'invalid CSV: text after the closing quote of a cell (a quote inside is "")'
    return f"invalid CSV: {message}" + (f" (line {line_num})" if line_num != start else "")
