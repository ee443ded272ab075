"""Mock generator: generate plus download of a 1080x1920 placeholder, median time.

    python benchmarks/mock_generate.py [--runs 30] [--style detailed]

Prints the median and spread of ``generate_image`` + ``download_image`` (to a temporary
folder), and of ``generate_to_file`` (which also adds the request to the PNG metadata).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from degrees37_imagegen import GeneratorRegistry, generate_to_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--style", default="detailed")
    args = parser.parse_args()
    gen = GeneratorRegistry({}).get_generator("mock", {"placeholder_style": args.style})
    prompt = (
        "A lighthouse on a rocky cliff at dusk, waves crashing below, a lone keeper climbing "
        "the spiral stairs with a lantern, cinematic lighting"
    )
    plain: list[float] = []
    full: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            start = time.perf_counter()
            image_id = gen.generate_image(prompt, width=1080, height=1920, seed=i)
            assert image_id is not None
            gen.download_image(image_id, Path(tmp) / f"{i}.png")
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            generate_to_file(gen, Path(tmp) / f"m{i}.png", prompt, width=1080, height=1920, seed=i)
            full.append(time.perf_counter() - start)
    for label, times in (
        ("generate_image + download_image", plain),
        ("generate_to_file (with metadata)", full),
    ):
        q = statistics.quantiles(times, n=10)
        print(
            f"{label:<34} median {statistics.median(times) * 1000:6.1f} ms   "
            f"p10 {q[0] * 1000:6.1f} ms   p90 {q[-1] * 1000:6.1f} ms   "
            f"({args.runs} runs, 1080x1920 {args.style})"
        )


if __name__ == "__main__":
    main()
