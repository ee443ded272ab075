"""The batch journal: each submission recorded durably, so that a kill costs nothing.

Before a job is sent, the runner appends a ``submitted`` record to the manifest holding the
job's saved form with its idempotency key, flushed and synced to disk (for generators that
can find their jobs by key, ``BaseImageGenerator.find_job``: ComfyUI and InvokeAI). Once
the server has accepted the job, a second record holds its handle (``ImageJob.to_dict()``,
with the server's id); for a generator that cannot find its jobs, that one is the first,
synced record::

    {"job": 3, "name": "003-a-storm", "file": "003-a-storm.png", "status": "submitted",
     "request": {...}, "handle": {"format": "degrees37-imagegen/job/1", "id": "...", ...},
     "finished_at": "2026-11-26T10:15:02.123+00:00"}

The job's ``done`` (or ``failed``) record follows when it ends. A rerun after a crash or a
SIGKILL finds jobs whose last record is ``submitted`` and whose file is not there, and
adopts them (:func:`adoptable`): one saved before it was sent is looked up by its key, a
finished one is downloaded, a queued or running one waited for, and one the server never
had or lost is submitted again. A kill at any moment thus makes no image twice. It also
removes the temporary files a killed run left behind (:func:`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..job import JOB_FORMAT
from .jobs import Job

__all__ = ["SUBMITTED", "adoptable", "journal_record", "remove_leftovers"]

#: The manifest status of a job a server has accepted and that has not ended yet.
SUBMITTED = "submitted"

#: The temporary files of :func:`~degrees37_imagegen.files.atomic_path`:
#: ``.<name>.<hex>.part`` beside the final file.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.part$")


def journal_record(job: Job, path: Path, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The ``submitted`` record of ``job``, given its saved handle: the handle's
    ``to_dict()`` once its server accepted it, or the form ``submit(on_sending=...)`` gave
    before sending (no ``id`` yet; a rerun finds the job by its key)."""
    return {
        "job": job.index,
        "name": job.name,
        "file": path.name,
        "status": SUBMITTED,
        "request": job.request(),
        "handle": dict(saved),
        "server": saved.get("server"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


def adoptable(
    previous: Mapping[str, Mapping[str, Any]], jobs: Iterable[Job], *, force: bool = False
) -> dict[str, Mapping[str, Any]]:
    """The saved handles of ``jobs`` that an earlier run submitted and never finished, by
    job name. A job whose request changed since is not adopted (it must be made anew);
    with ``force``, a job is adopted only if the earlier run never finished it either."""
    found: dict[str, Mapping[str, Any]] = {}
    for job in jobs:
        record = previous.get(job.name)
        if record is None or record.get("status") != SUBMITTED:
            continue
        handle = record.get("handle")
        if not isinstance(handle, Mapping) or handle.get("format") != JOB_FORMAT:
            continue
        from .manifest import same_request

        old = record.get("request")
        if isinstance(old, Mapping) and not same_request(old, job.request()):
            continue
        found[job.name] = handle
    return found


def remove_leftovers(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files (``.<name>.<hex>.part``) a killed run left in ``folder``
    for the files ``names`` (this run's own: another shard's may be in use)."""
    wanted = set(names)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match and match["name"] in wanted and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed
