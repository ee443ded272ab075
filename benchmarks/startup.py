"""Start-up cost of ``imagegen`` against a minimal one-command typer app.

Runs, in this same environment, ``imagegen --help`` and ``imagegen plugins`` (with every
installed plugin), and a minimal typer app's ``--help`` and its one command, each several
times in fresh processes, and prints the medians and the ratios. The target: imagegen takes
at most 30% longer than the minimal app.

    python benchmarks/startup.py [--runs 15]

Exits 1 if a ratio is above 1.3.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINIMAL_APP = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


if __name__ == "__main__":
    app()
'''

LIMIT = 1.30


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    imagegen = shutil.which("imagegen")
    if imagegen is None:
        print("imagegen is not installed in this environment", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "minimal.py"
        app.write_text(MINIMAL_APP)
        # A one-command typer app runs its command directly; "--help" shows its help.
        pairs = [
            ("--help", [sys.executable, str(app), "--help"], [imagegen, "--help"]),
            ("command", [sys.executable, str(app)], [imagegen, "plugins"]),
        ]
        plugins = subprocess.run([imagegen, "plugins"], capture_output=True, text=True).stdout
        print("installed plugins:\n" + plugins)
        worst = 0.0
        header = f"{'case':<10}{'minimal typer':>16}{'imagegen':>12}{'ratio':>8}"
        print(f"{header}   (median of {args.runs})")
        for label, base_cmd, our_cmd in pairs:
            base = median_seconds(base_cmd, args.runs)
            ours = median_seconds(our_cmd, args.runs)
            ratio = ours / base
            worst = max(worst, ratio)
            ours_label = "plugins" if label == "command" else label
            print(
                f"{label:<10}{base * 1000:>14.0f}ms{ours * 1000:>10.0f}ms{ratio:>8.2f}   "
                f"(imagegen {ours_label})"
            )
    verdict = "ok" if worst <= LIMIT else "TOO SLOW"
    print(f"worst ratio {worst:.2f} (limit {LIMIT:.2f}): {verdict}")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
