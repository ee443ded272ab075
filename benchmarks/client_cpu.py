"""The client's CPU time per image: ``imagegen batch`` of N jobs against fake servers.

The fake servers run in a process of their own, so the figure is the client's alone:
user + system CPU of the ``imagegen batch`` process (``RUSAGE_CHILDREN``) for N jobs,
minus that of the same command with ``--dry-run`` (start-up, config, reading the jobs),
divided by N. Each fake makes an image in ``--seconds`` (default 0.02 s).

    python benchmarks/client_cpu.py [--jobs 200] [--servers 1] [--backends comfyui,invokeai,mock]
    python benchmarks/client_cpu.py --src /path/to/another/checkout   # the same, for its code

``--src`` runs the client from another checkout's ``src`` folders (``git worktree add``
an older commit there), so that before and after are measured by the same script and
fakes. Prints one line per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _serve(backend: str, count: int, seconds: float) -> None:
    """Run ``count`` fake servers here and print their addresses; stop when stdin closes."""
    sys.path.insert(0, str(HERE / "fakes"))
    urls: list[str] = []
    if backend == "invokeai":
        from invokeai_server import FakeInvokeAI

        fakes = [FakeInvokeAI(seconds).__enter__() for _ in range(count)]
        urls = [f.url for f in fakes]
    elif backend == "comfyui":
        from comfyui_server import timed_fake_class

        cls = timed_fake_class(seconds)
        urls = [cls().start().url for _ in range(count)]
    print(json.dumps(urls), flush=True)
    sys.stdin.read()


def _config(backend: str, urls: list[str], work: Path) -> str:
    if backend == "mock":
        return "generators:\n  bench:\n    class: mock\n    delay: 0\n"
    if backend == "invokeai":
        key, extra = "base_url", {"default_model": "sdxl-base-1.0", "map_sdxl_resolution": False}
    else:
        sys.path.insert(0, str(HERE / "fakes"))
        from comfyui_server import WORKFLOW

        template = work / "workflow.json"
        template.write_text(json.dumps(WORKFLOW), encoding="utf-8")
        key, extra = "server_address", {"workflow_template": str(template)}
    entry: dict[str, object] = {"class": backend, **extra}
    if len(urls) == 1:
        entry[key] = urls[0]
    else:
        entry["servers"] = urls
    return json.dumps({"generators": {"bench": entry}})  # JSON is YAML


def _cpu_of(command: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(backend: str, jobs: int, servers: int, seconds: float, src: Path) -> str:
    """One backend's line: CPU per image, the dry run's CPU, and the wall time."""
    server = None
    urls: list[str] = []
    if backend != "mock":
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                backend,
                "--servers",
                str(servers),
                "--seconds",
                str(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        urls = json.loads(server.stdout.readline())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "generators.yaml").write_text(_config(backend, urls, work), encoding="utf-8")
            lines = [
                json.dumps({"prompt": f"scene {i}", "width": 64, "height": 64, "seed": i})
                for i in range(jobs)
            ]
            (work / "jobs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            paths = [
                src / "src",
                *(src / "plugins" / p / "src" for p in ("mock", "invokeai", "comfyui")),
            ]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
            base = [sys.executable, "-c", "from degrees37_imagegen.cli import main; main()"]
            base += ["batch", str(work / "jobs.jsonl"), "-c", str(work / "generators.yaml")]
            base += ["-g", "bench", "--json"]
            dry = _cpu_of([*base, "--dry-run", "-o", str(work / "dry")], env)
            started = time.perf_counter()
            full = _cpu_of([*base, "-o", str(work / "out")], env)
            wall = time.perf_counter() - started
            made = len(list((work / "out").glob("*.png")))
    finally:
        if server is not None:
            server.communicate("")
    per_image = (full - dry) / jobs * 1000
    return (
        f"{backend:9} {per_image:6.2f} ms CPU/image  ({jobs} jobs, {made} made, {servers} "
        f"server(s), dry run {dry:.2f} s CPU, batch {wall:.1f} s wall)"
    )


def main() -> None:
    """Parse the arguments; serve fakes or measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.02)
    parser.add_argument("--backends", default="mock,comfyui,invokeai")
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout whose code to run")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.servers, args.seconds)
        return
    print(f"client CPU per image, code from {args.src}")
    for backend in args.backends.split(","):
        print(measure(backend, args.jobs, args.servers, args.seconds, args.src.resolve()))


if __name__ == "__main__":
    main()
