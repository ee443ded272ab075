"""How long reading big input files takes: a 20 MB configuration, 100,000-job jobs files in
every format, and a YAML alias bomb ("billion laughs") that must be refused at once.

Writes the files into a temporary folder, then times :func:`load_config` and
:func:`load_jobs` on each (best of a few runs) and prints one line per file: its size, the
seconds taken and what came out, and below it the parser alone (``yaml.load`` with
libyaml's ``CSafeLoader``, ``json.loads``, ``csv.reader``): the floor that checking every
entry adds to. The target: about a second for each big file, well under one for the bomb
(refused, never expanded).

    python benchmarks/load_files.py [--jobs 100000] [--config-mb 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from degrees37_imagegen import ConfigError, load_config
from degrees37_imagegen.batch import JobsFileError, load_jobs

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def write_config(path: Path, megabytes: int) -> None:
    """A config of ``megabytes`` MB: many mock entries with settings and ``${VAR:-x}``."""
    lines = ["default_generator: mock", "generators:"]
    size = 0
    n = 0
    while size < megabytes * 1_000_000:
        entry = (
            f"  mock_{n}:\n    class: mock\n    delay: ${{MOCK_DELAY:-0}}\n"
            f"    label: 'entry number {n} of the big configuration'\n"
            f"    description: a mock entry written by benchmarks/load_files.py ({n})\n"
        )
        lines.append(entry.rstrip("\n"))
        size += len(entry)
        n += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def jobs(n: int) -> list[dict[str, Any]]:
    return [
        {"prompt": f"scene {i}: the lighthouse keeper climbs the stairs", "seed": i, "steps": 20}
        for i in range(1, n + 1)
    ]


def write_jobs(folder: Path, n: int) -> list[Path]:
    data = jobs(n)
    paths = []
    as_json = folder / "jobs.json"
    as_json.write_text(json.dumps(data, indent=2), encoding="utf-8")
    as_jsonl = folder / "jobs.jsonl"
    as_jsonl.write_text("".join(json.dumps(job) + "\n" for job in data), encoding="utf-8")
    as_yaml = folder / "jobs.yaml"
    as_yaml.write_text(
        yaml.dump({"defaults": {"width": 512}, "jobs": data}, Dumper=yaml.CSafeDumper),
        encoding="utf-8",
    )
    as_csv = folder / "jobs.csv"
    with as_csv.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["prompt", "seed", "steps"])
        writer.writeheader()
        writer.writerows(data)
    paths += [as_json, as_jsonl, as_yaml, as_csv]
    return paths


def parser_alone(path: Path) -> Callable[[], str] | None:
    """Reading ``path`` with the parser only, or ``None`` (the bombs are not parsed)."""
    if "bomb" in path.name:
        return None
    text = path.read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def parse() -> str:
        if path.suffix == ".yaml":
            yaml.load(text, Loader=loader)
            return f"yaml.load(Loader={loader.__name__})"
        if path.suffix == ".json":
            json.loads(text)
            return "json.loads"
        if path.suffix == ".jsonl":
            [json.loads(line) for line in text.splitlines()]
            return "json.loads per line"
        list(csv.reader(text.splitlines()))
        return "csv.reader"

    return parse


def best_of(runs: int, func: Callable[[], str]) -> tuple[float, str]:
    best = float("inf")
    said = ""
    for _ in range(runs):
        start = time.perf_counter()
        said = func()
        best = min(best, time.perf_counter() - start)
    return best, said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--config-mb", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"yaml C loader: {'yes' if hasattr(yaml, 'CSafeLoader') else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "generators.yaml"
        write_config(config, args.config_mb)
        bomb_config = folder / "bomb.yaml"
        bomb_config.write_text(BOMB, encoding="utf-8")
        bomb_jobs = folder / "bomb-jobs.yaml"
        bomb_jobs.write_text(BOMB.replace("a: &a", "jobs: &a", 1), encoding="utf-8")

        def config_entries() -> str:
            return f"{len(load_config(config).generators)} entries"

        def refused_config() -> str:
            try:
                load_config(bomb_config)
            except ConfigError as exc:
                return f"refused: {exc}"
            return "NOT refused"

        def refused_jobs() -> str:
            try:
                load_jobs(bomb_jobs)
            except JobsFileError as exc:
                return f"refused: {exc}"
            return "NOT refused"

        cases: list[tuple[Path, Callable[[], str]]] = [(config, config_entries)]
        for path in write_jobs(folder, args.jobs):
            cases.append((path, lambda path=path: f"{len(load_jobs(path))} jobs"))  # type: ignore[misc]
        cases += [(bomb_config, refused_config), (bomb_jobs, refused_jobs)]
        for path, func in cases:
            seconds, said = best_of(args.runs, func)
            size = path.stat().st_size / 1e6
            print(f"{path.name:<16} {size:7.1f} MB  {seconds:6.2f} s  {said}")
            floor = parser_alone(path)
            if floor is not None:
                parsed, parser = best_of(args.runs, floor)
                print(f"{'':<16} {'':>10}  {parsed:6.2f} s  {parser} alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
