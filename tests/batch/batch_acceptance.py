"""What issue 9's acceptance tests share for ComfyUI and InvokeAI: the 40 jobs (each seed is
its image's colour or metadata), and a real ``imagegen batch`` killed with SIGKILL and run
again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from degrees37_imagegen.batch import parse_jobs

SEEDS = [1000 + 7919 * i for i in range(1, 41)]


def jobs() -> list[Any]:
    """One 64x64 job per seed of :data:`SEEDS`."""
    return parse_jobs(
        [{"prompt": f"scene {i}", "seed": seed} for i, seed in enumerate(SEEDS, 1)],
        defaults={"width": 64, "height": 64},
    )


def kill_then_rerun(
    folder: Path, generator: str, config: str, seeds: list[int], *, after: int = 10
) -> None:
    """Run ``imagegen batch`` of one 64x64 job per seed in ``folder`` with the generator
    entry ``generator`` of the YAML ``config``; SIGKILL it once ``after`` images are done,
    check that the manifest journaled jobs, and run the same command again to exit 0."""
    (folder / "generators.yaml").write_text(config, encoding="utf-8")
    lines = [
        json.dumps({"prompt": f"scene {i}", "seed": s, "width": 64, "height": 64})
        for i, s in enumerate(seeds, 1)
    ]
    (folder / "book.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [
        sys.executable,
        "-c",
        "from degrees37_imagegen.cli import main; main()",
        "batch",
        "book.jsonl",
        "-c",
        "generators.yaml",
        "-g",
        generator,
        "-j",
        "3",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=folder, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    done = 0
    deadline = time.monotonic() + 60
    while done < after and time.monotonic() < deadline:
        if "] done" in proc.stderr.readline():
            done += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()
    journaled = [
        json.loads(line)
        for line in (folder / "book" / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert any(r["status"] == "submitted" for r in journaled)
    rerun = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
