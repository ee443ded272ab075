"""Memory of saving a large image: the core streams it into place, never holding it.

A generator whose ``fetch_image`` streams a PNG from disk in 64 KiB chunks (as an HTTP
download does) saves a 64x64 image, then, in a fresh process, a noisy image of about
30 MB. Each process reports its peak resident memory (``ru_maxrss``); the difference is
what the large image costs the client. Target: under 10 MB.

    python benchmarks/save_memory.py [--size 3200]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CHILD = r"""
import resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from save_memory import FileGenerator
gen = FileGenerator(Path(sys.argv[1]))
job = gen.submit("x", width=8, height=8).wait()
job.save(Path(sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _generator_class() -> Any:
    from degrees37_imagegen import BaseImageGenerator, ImageRequest, JobRef, JobUpdate

    class FileGenerator(BaseImageGenerator):
        """Serves one PNG file, streamed in chunks."""

        def __init__(self, source: Path) -> None:
            super().__init__({}, name="file")
            self.source = source

        def test_connection(self) -> bool:
            return True

        def start_job(self, request: ImageRequest) -> JobRef:
            return JobRef("file-1")

        def poll_job(self, ref: JobRef) -> JobUpdate:
            return JobUpdate("done")

        def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> Iterator[bytes]:
            with open(self.source, "rb") as fh:
                while chunk := fh.read(65536):
                    yield chunk

    return FileGenerator


FileGenerator = _generator_class()


def _peak(source: Path, target: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(target), str(Path(__file__).parent)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    """Make the two images, save each in a fresh process, print the peaks."""
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3200, help="side of the large image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small, large = work / "small.png", work / "large.png"
        Image.new("RGB", (64, 64), "red").save(small)
        side = args.size
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
            large, compress_level=1
        )
        base = _peak(small, work / "out-small.png")
        big = _peak(large, work / "out-large.png")
        size_mb = large.stat().st_size / 1e6
        print(f"saving a {size_mb:.1f} MB PNG: peak RSS {big / 1e6:.1f} MB")
        print(f"saving a 64x64 PNG:       peak RSS {base / 1e6:.1f} MB")
        print(f"difference: {(big - base) / 1e6:.1f} MB (target: under 10 MB)")
        print(f"(the process that made the images used {_self_peak() / 1e6:.0f} MB)")


def _self_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
