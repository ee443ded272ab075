"""Kill the client, or restart the server, during a real batch; count what each server made.

    python benchmarks/real_servers.py --comfyui http://127.0.0.1:8188 \\
        --comfyui-output /path/to/ComfyUI/output --invokeai http://127.0.0.1:9090 \\
        [--jobs 40] [--scenario kill restart] \\
        [--restart-comfyui "shell command"] [--restart-invokeai "shell command"]

Model-free templates (ComfyUI: EmptyImage into SaveImage, the colour is the job's seed;
InvokeAI: a ``blank_image`` graph carrying the seed in an ``integer`` node), so that any
server runs them on a CPU without weights. Each scenario runs ``imagegen batch`` in a
subprocess:

- ``kill``: SIGKILL the client after a third of the images are done, then run the same
  command again;
- ``restart``: run the restart command (which must return once the server is stopped and
  started again in the background) after a third of the images are done.

It prints the images written, whether each is its own job's, and how many times the server
ran each job (ComfyUI: the files in its output folder with this run's prefix, each one
execution, read for their colour; InvokeAI: this run's completed queue items by seed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

CLI = [sys.executable, "-c", "from degrees37_imagegen.cli import main; main()"]


def comfy_workflow(prefix: str) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": "{{width}}",
                "height": "{{height}}",
                "batch_size": 1,
                "color": "{{seed}}",
            },
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


INVOKE_GRAPH: dict[str, Any] = {
    "id": "blank-tagged",
    "nodes": {
        "blank": {
            "id": "blank",
            "type": "blank_image",
            "width": "{{width}}",
            "height": "{{height}}",
            "color": {"r": 40, "g": 90, "b": 160, "a": 255},
        },
        "tag": {"id": "tag", "type": "integer", "value": "{{seed}}"},
    },
    "edges": [],
}


def write_inputs(folder: Path, args: argparse.Namespace, prefix: str, seeds: list[int]) -> None:
    (folder / "workflow.json").write_text(json.dumps(comfy_workflow(prefix)), encoding="utf-8")
    (folder / "graph.json").write_text(json.dumps(INVOKE_GRAPH), encoding="utf-8")
    config = ["generators:"]
    if args.comfyui:
        config += [
            "  comfy:",
            "    class: comfyui",
            f"    server_address: {args.comfyui}",
            "    workflow_template: workflow.json",
        ]
    if args.invokeai:
        config += [
            "  invoke:",
            "    class: invokeai",
            f"    base_url: {args.invokeai}",
            "    graph_template: graph.json",
            "    graph_output_node: blank",
        ]
    (folder / "generators.yaml").write_text("\n".join(config) + "\n", encoding="utf-8")
    lines = [
        json.dumps({"prompt": f"scene {i}", "seed": s, "width": 64, "height": 64})
        for i, s in enumerate(seeds, 1)
    ]
    (folder / "book.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(folder: Path, generator: str, *, after: int | None, action: Any) -> tuple[int, float]:
    """Run the batch; after ``after`` images call ``action(proc)``. Exit code and seconds."""
    command = [*CLI, "batch", "book.jsonl", "-c", "generators.yaml", "-g", generator, "-j", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=folder, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    done = 0
    for line in proc.stderr:
        if "] done" in line:
            done += 1
            if after is not None and done == after:
                action(proc)
                after = None
    code = proc.wait()
    return code, time.perf_counter() - t0


def comfy_made(output: Path, prefix: str) -> Counter[int]:
    made: Counter[int] = Counter()
    for path in output.glob(f"{prefix}_*.png"):
        with Image.open(path) as image:
            r, g, b = image.convert("RGB").getpixel((0, 0))
        made[(r << 16) | (g << 8) | b] += 1
    return made


def invoke_made(base_url: str, seeds: set[int]) -> Counter[int]:
    items = httpx.get(f"{base_url}/api/v1/queue/default/list_all", timeout=30).json()
    made: Counter[int] = Counter()
    for item in items:
        if item.get("status") != "completed":
            continue
        try:
            detail = httpx.get(
                f"{base_url}/api/v1/queue/default/i/{item['item_id']}", timeout=30
            ).json()
            value = detail["session"]["graph"]["nodes"]["tag"]["value"]
        except (KeyError, TypeError, ValueError, httpx.HTTPError):
            continue
        if value in seeds:
            made[value] += 1
    return made


def check_images(folder: Path, seeds: list[int], invokeai: str | None) -> tuple[int, int]:
    """Images written whole, and how many of them are their own job's: by colour on
    ComfyUI; on InvokeAI, by the seed in the graph of the queue item the manifest names."""
    items: dict[str, Any] = {}
    if invokeai:
        for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("status") == "done":
                items[record["file"]] = record["image_id"]
    whole = own = 0
    for i, seed in enumerate(seeds, 1):
        found = list(folder.glob(f"{i:03}-*.png"))
        if len(found) != 1:
            continue
        with Image.open(found[0]) as image:
            image.load()
            whole += 1
            r, g, b = image.convert("RGB").getpixel((0, 0))
        if invokeai:
            item = httpx.get(
                f"{invokeai}/api/v1/queue/default/i/{items.get(found[0].name)}", timeout=30
            ).json()
            own += item["session"]["graph"]["nodes"]["tag"]["value"] == seed
        else:
            own += ((r << 16) | (g << 8) | b) == seed
    return whole, own


def scenario(name: str, generator: str, args: argparse.Namespace) -> None:
    prefix = f"d37real{random.randrange(16**6):06x}"
    base = random.randrange(1, 2**24 - 100_000)
    seeds = [base + 997 * i for i in range(args.jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, args, prefix, seeds)
        third = max(1, args.jobs // 3)
        t0 = time.perf_counter()
        if name == "kill":
            first, _ = run(
                folder, generator, after=third, action=lambda p: p.send_signal(signal.SIGKILL)
            )
            code, _ = run(folder, generator, after=None, action=None)
            how = f"killed after {third} (exit {first}), rerun exit {code}"
        else:
            command = args.restart_comfyui if generator == "comfy" else args.restart_invokeai

            def restart(_proc: Any) -> None:
                subprocess.run(command, shell=True, check=True)

            code, _ = run(folder, generator, after=third, action=restart)
            how = f"server restarted after {third}, exit {code}"
        seconds = time.perf_counter() - t0
        out = folder / "book"
        whole, own = check_images(out, seeds, args.invokeai if generator == "invoke" else None)
        leftovers = len(list(out.glob(".*.part")))
    if generator == "comfy":
        made = comfy_made(Path(args.comfyui_output), prefix)
    else:
        made = invoke_made(args.invokeai, set(seeds))
    twice = {s: n for s, n in made.items() if n > 1}
    print(
        f"{generator:6} {name:7} {how}: images {whole}/{args.jobs} whole, {own} their own "
        f"job's; server ran {sum(made.values())} jobs for {len(made)} images, "
        f"{sum(n - 1 for n in twice.values())} twice {sorted(twice)}; leftovers {leftovers}; "
        f"{seconds:.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui")
    parser.add_argument("--comfyui-output", help="ComfyUI's output folder (to count its runs)")
    parser.add_argument("--invokeai")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--scenario", nargs="+", default=["kill", "restart"])
    parser.add_argument("--restart-comfyui")
    parser.add_argument("--restart-invokeai")
    args = parser.parse_args()
    for name in args.scenario:
        for generator, url in (("comfy", args.comfyui), ("invoke", args.invokeai)):
            if not url:
                continue
            if generator == "comfy" and not args.comfyui_output:
                parser.error("--comfyui-output is needed to count ComfyUI's runs")
            if name == "restart" and not (
                args.restart_comfyui if generator == "comfy" else args.restart_invokeai
            ):
                flag = "--restart-comfyui" if generator == "comfy" else "--restart-invokeai"
                print(f"{generator:6} restart: skipped (no {flag} command)")
                continue
            scenario(name, generator, args)


if __name__ == "__main__":
    main()
