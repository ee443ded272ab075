"""The batch manifest: one JSON line per finished job, appended as each job finishes.

``DIR/manifest.jsonl`` (``DIR/manifest-K-of-N.jsonl`` for shard K of N, so that machines
sharing one folder never write the same file) holds one record per finished job::

    {"job": 3, "name": "003-a-lighthouse", "file": "003-a-lighthouse.png",
     "status": "done", "request": {...}, "seed": 1234, "generator": "gpus",
     "server": "http://gpu2:9090", "image_id": "c0ffee.png",
     "timings": {"queued": 0.4, "generate": 5.1, "download": 0.02, "total": 5.12},
     "error": null, "error_type": null, "attempts": 1,
     "finished_at": "2026-11-26T10:15:02.123+00:00"}

A rerun appends; :func:`read_manifest` reads every manifest in the folder and keeps the last
record per job. A line cut short by a crash is ignored.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import Job

__all__ = [
    "MANIFEST_NAME",
    "ManifestWriter",
    "manifest_name",
    "needs_remake",
    "read_manifest",
    "same_request",
]

#: The manifest of an unsharded batch.
MANIFEST_NAME = "manifest.jsonl"


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """``manifest.jsonl``, or ``manifest-K-of-N.jsonl`` for shard K of N."""
    if shard is None or shard[1] == 1:
        return MANIFEST_NAME
    return f"manifest-{shard[0]}-of-{shard[1]}.jsonl"


class ManifestWriter:
    """Appends records to a manifest file, one whole line per :meth:`write`, from any thread.

    Each record is written with a single ``write`` call and flushed, so a crash loses at most
    the record being written, and never garbles an earlier one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None

    def write(self, record: Mapping[str, Any], *, sync: bool = False) -> None:
        """Append ``record`` as one JSON line; ``sync``: also to the disk (``fsync``)."""
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
                if self._fh.tell() > 0 and not _ends_with_newline(self.path):
                    self._fh.write("\n")  # a line cut short by a crash stays on its own
            self._fh.write(line)
            self._fh.flush()
            if sync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file (it is reopened by the next :meth:`write`)."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for raw in text.splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            yield record


def read_manifest(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The last record of each job (by output name) in every manifest in ``folder``.

    Records from several manifests (shards) are merged by their ``finished_at`` time.
    """
    base = Path(folder)
    records: list[dict[str, Any]] = []
    for path in sorted(base.glob("manifest*.jsonl")):
        records.extend(_records(path))
    records.sort(key=lambda r: str(r.get("finished_at", "")))  # stable: file order on ties
    return {record["name"]: record for record in records}


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a manifest line (tuples are lists, and so on)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def same_request(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two requests (as recorded in a manifest) ask for the same image.

    A key missing on one side and ``None`` on the other count as the same.
    """
    a, b = _as_json(dict(old)), _as_json(dict(new))
    return all(a.get(key) == b.get(key) for key in set(a) | set(b))


def needs_remake(previous: Mapping[str, Any] | None, job: Job) -> bool:
    """Whether ``job``'s image, already in the folder, must be made again without
    ``--force``: its manifest record ``previous`` says it was made from another request
    (a new prompt, size, seed or option under the same name).

    ``False`` when there is no record, the record has no request (an older manifest), or the
    record is not of a finished image: then nothing says that the file is out of date.
    """
    if previous is None or previous.get("status") not in {"done", "skipped"}:
        return False
    old = previous.get("request")
    if not isinstance(old, Mapping):
        return False
    return not same_request(old, job.request())
