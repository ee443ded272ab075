"""``imagegen batch``: a jobs file to a folder of images, resumable, servers kept busy."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Optional

import typer

from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, cli_errors, echo_err
from ._options import ConfigOption

if TYPE_CHECKING:
    from ..base import BaseImageGenerator
    from ..batch import BatchRunner, BatchSummary, Job, JobProblem, JobResult
    from ..registry import GeneratorRegistry

__all__ = ["batch"]


def _shard_option(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    from ..batch.jobs import parse_shard

    try:
        parse_shard(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def batch(
    jobs_file: Annotated[
        Path,
        typer.Argument(
            metavar="JOBS",
            help="Jobs file: YAML or JSON (a list, or 'defaults:' and 'jobs:'), JSON Lines or CSV.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder (default: the jobs file's name without extension, here; "
            "book-yaml/ and book-csv/ when book.yaml and book.csv sit side by side).",
            show_default=False,
        ),
    ] = None,
    generator: Annotated[
        Optional[str],
        typer.Option(
            "--generator",
            "-g",
            metavar="NAME",
            help="Generator for jobs that name none (default: the config's default_generator).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-j",
            min=1,
            help="Jobs in flight per server: 2 keeps one running and one queued.",
        ),
    ] = 2,
    force: Annotated[
        bool, typer.Option("--force", help="Make every image again, even those already there.")
    ] = False,
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard",
            metavar="K/N",
            callback=_shard_option,
            help="Run only shard K of N (jobs K, K+N, K+2N...), to share a jobs file and an "
            "output folder between machines.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per finished job, then a summary."),
    ] = False,
    contact_sheet: Annotated[
        bool,
        typer.Option(
            "--contact-sheet", help="Also write contact_sheet.png: every image as a thumbnail."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Check the jobs and show what would be made; make nothing."),
    ] = False,
    keep_queued: Annotated[
        bool,
        typer.Option(
            "--keep-queued",
            help="On Ctrl-C, let the jobs already on the servers finish instead of canceling them.",
        ),
    ] = False,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            help="Tries again per job after a transient fault (a 5xx, a truncated download, a "
            "job lost by a server restart), with backoff.",
        ),
    ] = 3,
    outage_tolerance: Annotated[
        Optional[float],
        typer.Option(
            "--outage-tolerance",
            metavar="SECONDS",
            min=0,
            help="How long jobs wait for a server that does not answer before they fail "
            "[default: the generator's outage_tolerance setting, else 300].",
            show_default=False,
        ),
    ] = None,
    driver: Annotated[
        Literal["auto", "threads", "async"],
        typer.Option(
            "--driver",
            help="How jobs run: one event loop (async), a thread per job in flight (threads), "
            "or the loop when every generator's plugin is natively async (auto).",
        ),
    ] = "auto",
) -> None:
    """Make every image of a jobs file into a folder; run it again to finish what is left.

    Images already there (whole) are skipped; a failed job does not stop the others.

    Every job is recorded in the folder's manifest.jsonl.

    Ctrl-C cancels our queued and running jobs on the servers (--keep-queued lets them
    finish and saves their images), then exits.

    Exit codes: 0 all done, 1 some job failed, 2 bad input (nothing made), 130 interrupted.
    """
    import warnings

    from ..arguments import UnknownOptionWarning
    from ..batch import BatchRunner, parse_shard
    from ..batch import shard as take_shard
    from ..batch.jobs import default_output_dir

    with cli_errors(), contextlib.ExitStack() as stack:
        jobs, problems = _load(jobs_file)
        registry = _registry(config)
        default = stack.enter_context(registry.get_generator(generator))
        others, unknown = _other_generators(registry, jobs, default, stack)
        problems += unknown
        shard_kn = parse_shard(shard) if shard else None
        out_dir = out if out is not None else default_output_dir(jobs_file)
        runner = BatchRunner(
            default,
            out_dir,
            generators=others,
            concurrency=concurrency,
            force=force,
            shard=shard_kn,
            retries=retries,
            outage_tolerance=outage_tolerance,
            driver=driver,
        )
        bad = {p.index for p in unknown}  # jobs with an unknown generator: nothing to check
        problems += runner.check(j for j in jobs if j.index not in bad)
        if problems:
            _report_problems(problems, jobs_file)
        selected = take_shard(jobs, *shard_kn) if shard_kn else jobs
        _warn_unknown_options(runner, selected)
        stack.enter_context(warnings.catch_warnings())  # said once above, not once a job
        warnings.filterwarnings("ignore", category=UnknownOptionWarning)
        if dry_run:
            _dry_run(runner, selected, as_json)
            return
        _preflight(runner, selected)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            echo_err(f"error: cannot create the output folder {out_dir}: {exc.strerror or exc}")
            raise typer.Exit(EXIT_USAGE) from None
        summary = _run(runner, selected, as_json, keep_queued=keep_queued)
        if contact_sheet and summary.done + summary.skipped:
            _contact_sheet(runner, jobs, as_json)
        _finish(summary, runner, as_json)


# -- preparing ---------------------------------------------------------------------------


def _registry(config: Path | None) -> GeneratorRegistry:
    from ._registry import open_registry

    return open_registry(config)


def _load(path: Path) -> tuple[list[Job], list[JobProblem]]:
    """The jobs of the file that have no problem, and the problems: reported together with
    those found next (unknown generators, sizes refused), unless no job could be read."""
    from ..batch import JobsFileError, load_jobs

    try:
        jobs = load_jobs(path)
    except JobsFileError as exc:
        if not exc.jobs:
            _report_problems(exc.problems, path)
        return exc.jobs, exc.problems
    if not jobs:
        echo_err(f"error: {path}: no jobs")
        raise typer.Exit(EXIT_USAGE)
    return jobs, []


def _other_generators(
    registry: GeneratorRegistry,
    jobs: Sequence[Job],
    default: BaseImageGenerator,
    stack: contextlib.ExitStack,
) -> tuple[dict[str, BaseImageGenerator], list[JobProblem]]:
    """The generators that jobs name, made once each; unknown names are job problems."""
    from ..batch import JobProblem
    from ..errors import GeneratorNotFoundError

    made: dict[str, BaseImageGenerator] = {}
    problems: list[JobProblem] = []
    for job in jobs:
        name = job.generator
        if name is None or name == default.name or name in made:
            continue
        try:
            made[name] = stack.enter_context(registry.get_generator(name))
        except GeneratorNotFoundError as exc:
            problems.append(JobProblem(str(exc), job.source, job.index, job.line))
    return made, problems


def _report_problems(problems: Sequence[JobProblem], path: Path) -> NoReturn:
    from ..batch.problems import in_file_order

    problems = in_file_order(problems)
    shown = 20  # enough to see the pattern; the count says how many there are
    for problem in problems[:shown]:
        echo_err(f"error: {problem}")
    if len(problems) > shown:
        echo_err(f"error: ... and {len(problems) - shown} more")
    count = len(problems)
    echo_err(f"{count} problem{'s' if count != 1 else ''} in {path}; nothing was generated")
    raise typer.Exit(EXIT_USAGE)


def _warn_unknown_options(runner: BatchRunner, jobs: Sequence[Job]) -> None:
    """One ``warning:`` line per option a generator does not know, naming the first job
    that has it (and how many more do)."""
    from ..arguments import unknown_options

    found: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        gen = runner.generator_for(job)
        for key in unknown_options(gen, job.extra):
            found.setdefault((gen.name, key), []).append(job)
    for (name, key), having in found.items():
        first = having[0]
        where = f"{first.source}: " if first.source else ""
        more = f" (and {len(having) - 1} more job(s))" if len(having) > 1 else ""
        echo_err(
            f"warning: {where}{first.where}: generator {name!r} does not know option "
            f"{key!r}; it is ignored{more}"
        )


# -- running -----------------------------------------------------------------------------


def _preflight(runner: BatchRunner, jobs: Sequence[Job]) -> None:
    """Stop at once, in one line, when a generator's server does not answer (rather than
    fail every job); say which servers of a pool are left out."""
    from ..batch import GeneratorPool

    used = {id(g): g for g in (runner.generator_for(j) for j in jobs)}
    if runner.uses_event_loop(jobs):  # asked as the batch will ask: on an event loop
        import asyncio

        from ..batch.arunner import probe

        answers = asyncio.run(probe(runner, list(used.values())))
    else:
        answers = [gen.test_connection() for gen in used.values()]
    for gen, ready in zip(used.values(), answers):
        if isinstance(gen, GeneratorPool):
            for member in gen.members:
                if not member.alive:
                    echo_err(
                        f"warning: pool {gen.name!r}: {member.label} is out of rotation "
                        f"({member.error})"
                    )
        if not ready:
            echo_err(
                f"error: generator {gen.name!r} is not ready (its server does not answer); "
                "nothing was generated"
            )
            raise typer.Exit(EXIT_FAILED)


def _dry_run(runner: BatchRunner, jobs: Sequence[Job], as_json: bool) -> None:
    lines = []
    for job in jobs:
        action = "make" if runner.force or not runner.is_done(job) else "skip"
        target = runner.path_for(job)
        if as_json:
            lines.append(json.dumps({"job": job.index, "action": action, "file": str(target)}))
        else:
            lines.append(f"{action}  {target}  {job.width}x{job.height}  {job.prompt[:60]}")
    _print_lines(lines)


def _print_lines(lines: Sequence[str]) -> None:
    """Write ``lines`` to stdout at once (``typer.echo`` asks the terminal about colour for
    each line: a thousand lines cost ~0.1 s of CPU)."""
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def _line(result: JobResult, position: int, total: int) -> str:
    width = len(str(total))
    head = f"[{position:>{width}}/{total}] {result.status:<7} {result.path.name}"
    if result.status == "failed":
        return f"{head}: {result.error}"
    if result.status == "skipped":
        return head + " (already there" + (f"; {result.note})" if result.note else ")")
    parts = [head, "seed: not used" if result.seed is None else f"seed {result.seed}"]
    if result.server:
        parts.append(result.server)
    parts.append(f"{result.timings.get('total', 0.0):.2f}s")
    return "  ".join(parts)


def _as_json(result: JobResult) -> str:
    return json.dumps({**result.record(), "path": str(result.path)}, ensure_ascii=False)


@contextlib.contextmanager
def _display(runner: BatchRunner, total: int, as_json: bool) -> Iterator[Any]:
    """A function to show each result: JSON lines, plain lines, or a live line on a terminal.

    The live line shows the counts, the ETA (from the mean job time and the jobs still to
    run) and the jobs in flight with their state; failures are printed above it.
    """
    if as_json or not sys.stderr.isatty():
        position = 0

        def show(result: JobResult) -> None:
            nonlocal position
            position += 1
            if as_json:
                _print_lines([_as_json(result)])  # one line as each job ends
            else:
                echo_err(_line(result, position, total))

        yield show
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, Task
    from rich.text import Text

    from ..batch import BatchEvent, GeneratorPool
    from ._progress import BatchDisplay

    servers = sum(
        len(g.members) if isinstance(g, GeneratorPool) else 1
        for g in {id(g): g for g in [runner.generator, *runner.generators.values()]}.values()
    )
    display = BatchDisplay(total, workers=servers * runner.concurrency)
    console = Console(stderr=True)

    class StatusColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(display.status_line(max(20, console.width - 32)))

    def on_event(event: BatchEvent) -> None:
        name = event.job.name
        if event.kind == "started":
            display.start(name)
        elif event.kind == "progress" and event.progress is not None:
            display.update(name, event.progress)
        elif event.kind == "finished" and event.result is not None:
            display.finish(name, event.result.status)

    runner.on_progress = on_event
    with Progress(
        BarColumn(bar_width=30),
        StatusColumn(),
        console=console,
        transient=False,
        refresh_per_second=4,
    ) as progress:
        task = progress.add_task("batch", total=total)

        def show_rich(result: JobResult) -> None:
            if result.status == "failed":
                progress.console.print(
                    f"[red]failed[/red] {result.path.name}: {result.error}",
                    markup=True,
                    highlight=False,
                )
            progress.update(task, advance=1)

        yield show_rich


def _run(
    runner: BatchRunner, jobs: Sequence[Job], as_json: bool, *, keep_queued: bool = False
) -> BatchSummary:
    if not as_json:
        echo_err(f"{len(jobs)} job(s) into {runner.out_dir}/ with {runner.generator.name}")
    try:
        with _display(runner, len(jobs), as_json) as show:
            for result in runner.run(jobs):
                show(result)
    except KeyboardInterrupt:
        running = runner.counts.running
        if keep_queued:
            echo_err(
                f"interrupted: no new job starts; waiting for {running} job(s) on the servers "
                "(--keep-queued; Ctrl-C again to abandon them)"
            )
        else:
            flying = [handle.id for _job, handle, _progress in runner.in_flight()]
            canceled = runner.cancel()
            which = f" ({', '.join(flying)})" if flying else ""
            echo_err(
                f"interrupted: canceled {canceled} job(s) of ours on the servers{which}; "
                "no new job starts (Ctrl-C again to stop waiting)"
            )
        try:
            runner.wait()
        except KeyboardInterrupt:
            echo_err(f"abandoned {runner.counts.running} running job(s); no partial file is left")
        _finish(runner.summary(), runner, as_json, interrupted=True)
    return runner.summary()


def _contact_sheet(runner: BatchRunner, jobs: Sequence[Job], as_json: bool) -> None:
    from ..batch import make_contact_sheet
    from ..batch.jobs import CONTACT_SHEET_NAME

    # Every job of the file, not only this shard: the sheet shows the whole book.
    items = [(job.name, runner.path_for(job)) for job in jobs]
    path = make_contact_sheet(items, runner.out_dir / f"{CONTACT_SHEET_NAME}.png")
    if not as_json:
        echo_err(f"contact sheet: {path}")


def _finish(
    summary: BatchSummary, runner: BatchRunner, as_json: bool, *, interrupted: bool = False
) -> None:
    if as_json:
        data = {"summary": {**summary.as_dict(), "out": str(runner.out_dir)}}
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        from ._progress import format_summary

        line = format_summary(
            summary.total,
            summary.done,
            summary.failed,
            summary.skipped,
            summary.elapsed,
            not_run=summary.not_run,
        )
        echo_err(line)
        for failure in summary.failures:
            echo_err(f"  failed: {failure.job.where} {failure.path.name}: {failure.error}")
        if runner.manifest_path is not None and runner.manifest_path.exists():
            echo_err(f"manifest: {runner.manifest_path}")
        if interrupted or summary.not_run:
            echo_err("run the same command again to make the rest")
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)
