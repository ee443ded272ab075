"""Jobs files: reading YAML, JSON, JSON Lines and CSV, and checking every job before any runs.

A jobs file is a list of jobs, or a mapping with ``defaults:`` (applied to every job) and
``jobs:``. A job is a mapping with ``prompt`` (required), ``negative_prompt``, ``width``,
``height``, ``seed``, ``name`` (the output file's stem), ``generator`` and any other keys,
which are passed to ``generate_image`` as keyword arguments. In YAML and JSON a job may
also be a plain string: its prompt.

Every problem in the file is collected and reported at once, naming the job and its line,
in a :class:`JobsFileError`, before anything is generated.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import MAX_SEED
from ..errors import InvalidRequestError
from ..files import slugify
from ..images import IMAGE_OPTIONS, resolve_image_paths
from ..yamlfast import paused_gc
from .formats import UNREADABLE, read_csv, read_json, read_jsonl, read_yaml
from .problems import JobProblem, JobsFileError

__all__ = [
    "CONTACT_SHEET_NAME",
    "JOB_KEYS",
    "Job",
    "JobProblem",
    "JobsFileError",
    "check_prompt",
    "default_output_dir",
    "load_jobs",
    "parse_jobs",
    "prompt_problem",
    "shard",
]

#: The keys a job understands itself; any other key is passed on to ``generate_image``.
JOB_KEYS = frozenset({"prompt", "negative_prompt", "width", "height", "seed", "name", "generator"})
#: Keys a job cannot use: they are parameters of the runner, not of the generator.
_RESERVED_KEYS = frozenset({"on_progress", "metadata", "output_path"})
#: The output stem of ``--contact-sheet``; no job may use it.
CONTACT_SHEET_NAME = "contact_sheet"

_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")
_KWARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Job:
    """One image to make: the request, where it came from, and the output file's stem.

    ``index`` is the job's 1-based position in its file (stable across shards and reruns);
    ``line`` its line in the file when known. ``extra`` holds the keys passed on to
    ``generate_image`` as keyword arguments. ``generator`` names the generator entry for
    this job, or ``None`` for the batch's generator.
    """

    index: int
    prompt: str
    negative_prompt: str = ""
    width: int = 1080
    height: int = 1920
    seed: int = -1
    name: str = ""
    generator: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", default_name(self.index, self.prompt))

    @property
    def filename(self) -> str:
        """The output file's name: ``<name>.png``."""
        return f"{self.name}.png"

    @property
    def where(self) -> str:
        """``job 3 (line 12)``: how messages name this job."""
        return f"job {self.index}" + (f" (line {self.line})" if self.line is not None else "")

    def request(self) -> dict[str, Any]:
        """The request as a JSON-ready dict (for the manifest)."""
        request: dict[str, Any] = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
        }
        if self.generator is not None:
            request["generator"] = self.generator
        request.update(self.extra)
        return request


def prompt_problem(prompt: object) -> str | None:
    """What is wrong with ``prompt`` (``"is empty"``...), or ``None``: the one rule for
    prompts, in jobs files and on the command line alike.

    A prompt is text with something in it besides white space.
    """
    if prompt is None:
        return "is missing"
    if not isinstance(prompt, str):
        return f"must be text, got {_show(prompt)}"
    if not prompt.strip():
        return "is empty"
    return None


def check_prompt(prompt: object) -> str:
    """``prompt`` if it is a usable prompt; else :class:`InvalidRequestError`, e.g.
    ``the prompt is empty: say what the image should show``."""
    problem = prompt_problem(prompt)
    if problem is not None:
        raise InvalidRequestError(f"the prompt {problem}: say what the image should show")
    return str(prompt)


def default_output_dir(jobs_path: str | Path) -> Path:
    """The folder a jobs file's images go to when ``--out`` is not given.

    The jobs file's name without its extension, in the current folder (``book.yaml`` gives
    ``book/``), unless another jobs file with the same stem is next to it: then each one's
    folder also names its format (``book.yaml`` gives ``book-yaml/``, ``book.csv`` gives
    ``book-csv/``), so that two jobs files never share a folder without being told to.
    """
    path = Path(jobs_path)
    suffix = path.suffix.lower()
    if suffix and _has_sibling(path):
        return Path(f"{path.stem}-{suffix.lstrip('.')}")
    return Path(path.stem)


def _has_sibling(path: Path) -> bool:
    """Whether another jobs file with ``path``'s stem is in its folder."""
    try:
        siblings = list(path.parent.glob(f"{glob.escape(path.stem)}.*"))
    except OSError:
        return False
    return any(
        other.suffix.lower() in _FORMATS
        and other.suffix.lower() != path.suffix.lower()
        and other.stem == path.stem
        and other.is_file()
        for other in siblings
    )


def default_name(index: int, prompt: str) -> str:
    """The output stem of a job without ``name``: ``003-a-lighthouse-at-dusk``."""
    return f"{index:03d}-{slugify(prompt)}"


# -- reading files ---------------------------------------------------------------------------

_FORMATS = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}


def load_jobs(path: str | Path, *, defaults: Mapping[str, Any] | None = None) -> list[Job]:
    """Read and check the jobs file at ``path`` (format chosen by its extension).

    ``.yaml``/``.yml``, ``.json``, ``.jsonl``/``.ndjson`` and ``.csv`` are known; other
    extensions are read as YAML (which also reads JSON). ``defaults`` apply under the file's
    own ``defaults:``. Raises :class:`JobsFileError` listing every problem found, in file
    order, each naming the job and its line.
    """
    file = Path(path)
    source = str(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise JobsFileError([JobProblem("jobs file not found", source)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsFileError([JobProblem(f"cannot read jobs file: {exc}", source)]) from None
    fmt = _FORMATS.get(file.suffix.lower(), "yaml")
    return parse_jobs_text(text, fmt, source=source, defaults=defaults)


def parse_jobs_text(
    text: str,
    fmt: str,
    *,
    source: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> list[Job]:
    """Parse jobs from ``text`` in format ``fmt`` (``yaml``, ``json``, ``jsonl`` or ``csv``).

    Raises :class:`JobsFileError` listing every problem in file order: in JSON Lines and
    CSV an unreadable line is one of them, and the other lines are still checked.
    """
    found: list[JobProblem] = []
    with paused_gc():  # many small objects, no cycles: see paused_gc
        if fmt == "jsonl":
            data, lines, found = read_jsonl(text, source)
        elif fmt == "csv":
            data, lines, found = read_csv(text, source)
        elif fmt == "json":
            data, lines = read_json(text, source)
        elif fmt == "yaml":
            data, lines = read_yaml(text, source)
        else:
            raise ValueError(f"unknown jobs format {fmt!r}")
        return _parse(data, source, defaults, lines, found)


def parse_jobs(
    data: Any,
    *,
    source: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    lines: Sequence[int] | Mapping[str, Any] | None = None,
) -> list[Job]:
    """Check jobs given as Python data and return them as :class:`Job` objects.

    ``data`` is a list of jobs (mappings, or strings that are prompts) or a mapping with
    ``defaults:`` and ``jobs:``. ``source`` names the file in messages, ``lines`` gives each
    job's line. Raises :class:`JobsFileError` listing every problem, including two jobs
    that would write the same file.
    """
    line_list: Sequence[int] = ()
    if isinstance(lines, Mapping):
        line_list = lines.get("list", ())
    elif lines is not None:
        line_list = lines
    return _parse(data, source, defaults, line_list, [])


def _parse(
    data: Any,
    source: str | None,
    defaults: Mapping[str, Any] | None,
    line_list: Sequence[int],
    problems: list[JobProblem],
) -> list[Job]:
    merged_defaults: dict[str, Any] = dict(defaults or {})
    if isinstance(data, Mapping):
        unknown = sorted(str(k) for k in data if k not in {"defaults", "jobs"})
        if unknown:
            problems.append(
                JobProblem(
                    f"unknown top-level key(s) {', '.join(unknown)} "
                    "(expected 'defaults' and 'jobs')",
                    source,
                )
            )
        file_defaults = data.get("defaults") or {}
        if not isinstance(file_defaults, Mapping):
            problems.append(JobProblem("'defaults' must be a mapping of job keys", source))
        else:
            merged_defaults.update(file_defaults)
        if "prompt" in merged_defaults or "name" in merged_defaults:
            problems.append(JobProblem("'defaults' cannot set 'prompt' or 'name'", source))
        items = data.get("jobs")
        if items is None:
            problems.append(JobProblem("no 'jobs:' list", source))
            raise JobsFileError(problems)
    else:
        items = data
    if items is None:
        items = []
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        problems.append(JobProblem("the jobs must be a list", source))
        raise JobsFileError(problems)
    jobs: list[Job] = []
    for index, item in enumerate(items, 1):
        line = line_list[index - 1] if index - 1 < len(line_list) else None
        job = _check_job(item, index, line, source, merged_defaults, problems)
        if job is not None:
            jobs.append(job)
    _check_names(jobs, problems, source)
    if problems:
        bad = {p.index for p in problems if p.index is not None}
        raise JobsFileError(problems, [job for job in jobs if job.index not in bad])
    return jobs


def _check_job(
    item: Any,
    index: int,
    line: int | None,
    source: str | None,
    defaults: Mapping[str, Any],
    problems: list[JobProblem],
) -> Job | None:
    def problem(message: str) -> None:
        problems.append(JobProblem(message, source, index, line))

    if item is UNREADABLE:  # its line's problem is reported already
        return None
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, Mapping):
        problem(
            f"must be a mapping with a 'prompt' (or a prompt string), got {type(item).__name__}"
        )
        return None
    raw = {**defaults, **item}
    before = len(problems)
    prompt = raw.get("prompt")
    if prompt is None:
        problem("missing 'prompt'")
    elif (wrong := prompt_problem(prompt)) is not None:
        problem(f"'prompt' {wrong}")
    negative = raw.get("negative_prompt", "")
    if negative is None:
        negative = ""
    if not isinstance(negative, str):
        problem(f"'negative_prompt' must be text, got {_show(negative)}")
    size: dict[str, int] = {}
    for key, default in (("width", 1080), ("height", 1920)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            problem(f"'{key}' must be a whole number of pixels, got {_show(value)}")
        elif value <= 0:
            problem(f"'{key}' must be positive, got {value}")
        else:
            size[key] = value
    seed = raw.get("seed", -1)
    if seed is None:
        seed = -1
    if isinstance(seed, bool) or not isinstance(seed, int):
        problem(f"'seed' must be a whole number (-1 for random), got {_show(seed)}")
    elif seed > MAX_SEED:
        problem(f"'seed' must be at most {MAX_SEED}, got {seed}")
    name = raw.get("name")
    if name is not None:
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)
        if not isinstance(name, str) or not _SAFE_STEM.match(name):
            problem(
                f"'name' must be a file name without extension or folder (letters, digits, "
                f"'.', '_', '-'; starting with a letter or digit), got {_show(name)}"
            )
        elif name.lower().endswith(".png"):
            problem(f"'name' is the file's stem: drop '.png' from {name!r}")
    generator = raw.get("generator")
    if generator is not None and (not isinstance(generator, str) or not generator):
        problem(f"'generator' must be a generator name, got {_show(generator)}")
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JOB_KEYS:
            continue
        if not isinstance(key, str) or not _KWARG.match(key):
            problem(f"key {_show(key)} is not a valid parameter name")
        elif key in _RESERVED_KEYS:
            problem(f"key {key!r} is reserved")
        else:
            extra[key] = value
    if not IMAGE_OPTIONS.isdisjoint(extra):  # init_image: and images: are relative to the jobs file
        base = Path(source).parent if source else Path()
        try:
            extra = resolve_image_paths(extra, base)
        except InvalidRequestError as exc:
            problem(str(exc))
    if len(problems) > before:
        return None
    return Job(
        index=index,
        prompt=str(prompt),
        negative_prompt=negative,
        width=size["width"],
        height=size["height"],
        seed=int(seed),
        name=str(name) if name is not None else "",
        generator=generator,
        extra=extra,
        line=line,
        source=source,
    )


def _check_names(jobs: Sequence[Job], problems: list[JobProblem], source: str | None) -> None:
    # Case-insensitive: on macOS and Windows 'Scene.png' and 'scene.png' are one file.
    first: dict[str, Job] = {}
    for job in jobs:
        key = job.name.casefold()
        if key == CONTACT_SHEET_NAME:
            problems.append(
                JobProblem(
                    f"output name {job.name!r} is reserved for the contact sheet",
                    source,
                    job.index,
                    job.line,
                )
            )
        elif key in first:
            other = first[key]
            problems.append(
                JobProblem(
                    f"output name {job.name!r} is already used by {other.where}",
                    source,
                    job.index,
                    job.line,
                )
            )
        else:
            first[key] = job


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def shard(jobs: Sequence[Job], k: int, n: int) -> list[Job]:
    """Shard ``k`` of ``n`` (1-based): the jobs whose index is ``k`` modulo ``n``.

    Shards ``1..n`` together hold every job exactly once, and each job stays in its shard
    however many jobs are added after it.
    """
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")
    return [job for job in jobs if (job.index - 1) % n == k - 1]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` is ``(2, 4)``; raises :class:`ValueError` with a clear message otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shard must look like K/N (e.g. 1/3), got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, got {text!r}")
    return k, n
