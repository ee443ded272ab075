"""Batch generation: a jobs file to a folder of images, servers kept busy, resumable.

::

    from degrees37_imagegen import GeneratorRegistry
    from degrees37_imagegen.batch import BatchRunner, load_jobs

    jobs = load_jobs("book.yaml")
    with GeneratorRegistry().get_generator("mock") as generator:
        runner = BatchRunner(generator, "book", concurrency=2)
        for result in runner.run(jobs):
            print(result.status, result.path, result.error or "")
    print(runner.summary().as_dict())

Importing this package is cheap: Pillow loads only to check or draw images.
"""

from __future__ import annotations

from .contact_sheet import make_contact_sheet
from .jobs import (
    Job,
    JobProblem,
    JobsFileError,
    load_jobs,
    parse_jobs,
    parse_jobs_text,
    parse_shard,
    shard,
)
from .manifest import MANIFEST_NAME, ManifestWriter, manifest_name, read_manifest
from .pool import GeneratorPool, PoolMember
from .runner import (
    DEFAULT_CONCURRENCY,
    BatchCallback,
    BatchCounts,
    BatchDriver,
    BatchEvent,
    BatchRunner,
    BatchSummary,
    JobResult,
    JobStatus,
    run_batch,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "MANIFEST_NAME",
    "BatchCallback",
    "BatchCounts",
    "BatchDriver",
    "BatchEvent",
    "BatchRunner",
    "BatchSummary",
    "GeneratorPool",
    "Job",
    "JobProblem",
    "JobResult",
    "JobStatus",
    "JobsFileError",
    "ManifestWriter",
    "PoolMember",
    "load_jobs",
    "make_contact_sheet",
    "manifest_name",
    "parse_jobs",
    "parse_jobs_text",
    "parse_shard",
    "read_manifest",
    "run_batch",
    "shard",
]
