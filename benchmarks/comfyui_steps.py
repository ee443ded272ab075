"""The ComfyUI async driver's own CPU per image, without the network: its pure steps alone.

``client_cpu.py`` measures the whole client against fake servers, where the machine's
other load moves the figure by more than these steps cost. This times, in-process and on
one thread, what the plugin's async driver does for each image:

* ``prepare``: fill the workflow template in (``_prepare``);
* ``messages``: read one prompt's WebSocket frames, as ComfyUI sends them (the capture
  ``ok_512x512.ws.json``) and hand each to the prompt it names (``decode``, ``_dispatch``);
* ``view``: open ``GET /view`` for its image and read it, through httpx with an
  in-memory transport (the HTTP machinery is httpx's, the bytes never leave the process).

    python benchmarks/comfyui_steps.py [--images 2000] [--repeat 5]
    python benchmarks/comfyui_steps.py --src /path/to/another/checkout   # its code

Prints the least of ``--repeat`` runs of each step, in µs of CPU (``time.thread_time``) an
image. ``--src`` runs another checkout's code (``git worktree add`` an older commit there)
with this script's workflow and capture, so that before and after are measured alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CAPTURE = HERE.parent / "tests" / "plugins" / "comfyui" / "captures" / "ok_512x512.ws.json"


def frames() -> tuple[str, list[str]]:
    """The prompt id and the text frames of the captured conversation, as ComfyUI writes
    them (``json.dumps`` of each message)."""
    messages = [
        m["msg"]
        for m in json.loads(CAPTURE.read_text(encoding="utf-8"))["messages"]
        if m.get("kind") == "text"
    ]
    prompt_id = next(
        str(m["data"]["prompt_id"]) for m in messages if m["type"] == "execution_start"
    )
    return prompt_id, [json.dumps(m) for m in messages]


def _least(runs: list[float], images: int) -> float:
    return min(runs) / images * 1e6


async def measure(images: int, repeat: int) -> dict[str, float]:
    """µs of CPU an image for each step (the least of ``repeat`` runs)."""
    sys.path.insert(0, str(HERE / "fakes"))
    from comfyui_server import WORKFLOW

    from degrees37_imagegen import ImageRequest
    from degrees37_imagegen.job import JobRef
    from degrees37_imagegen_comfyui import ComfyUIGenerator
    from degrees37_imagegen_comfyui._monitor import decode

    png = b"\x89PNG\r\n\x1a\n" + bytes(2000)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=png, headers={"Content-Type": "image/png"})

    gen = ComfyUIGenerator(
        {"server_address": "127.0.0.1:8188", "workflow_template": WORKFLOW},
        transport=httpx.MockTransport(answer),
    )
    driver: Any = gen.make_async_driver()
    requests = [
        ImageRequest(prompt=f"scene {i}", width=64, height=64, seed=i) for i in range(images)
    ]
    prompt_id, texts = frames()
    image = {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
    found: dict[str, list[float]] = {"prepare": [], "messages": [], "view": []}
    for _ in range(repeat):
        start = time.thread_time()
        for request in requests:
            gen._prepare(request, driver.client_id)
        found["prepare"].append(time.thread_time() - start)

        start = time.thread_time()
        for _ in range(images):
            prompt = driver.follow(JobRef(prompt_id, {}))
            for raw in texts:
                message = decode(raw)
                if message is not None:
                    driver._dispatch(message)
            driver._prompts.pop(prompt_id)
        found["messages"].append(time.thread_time() - start)
        if not (prompt.news and prompt.tracker.over):
            raise SystemExit("the captured frames did not finish the prompt")

        start = time.thread_time()
        for _ in range(images):
            async for chunk in driver.view(image):
                assert chunk
        found["view"].append(time.thread_time() - start)
    await driver.aclose()
    return {step: _least(runs, images) for step, runs in found.items()}


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--src", type=Path, help="the checkout whose code to run")
    args = parser.parse_args()
    if args.src is not None:
        plugins = [args.src / "plugins" / p / "src" for p in ("comfyui", "mock", "invokeai")]
        sys.path[:0] = [str(args.src / "src"), *map(str, plugins)]
    import degrees37_imagegen_comfyui

    figures = asyncio.run(measure(args.images, args.repeat))
    where = Path(degrees37_imagegen_comfyui.__file__).parents[4]
    print(
        f"ComfyUI async driver, pure steps, code from {where}: µs CPU an image (least of "
        f"{args.repeat} runs of {args.images})"
    )
    for step, value in figures.items():
        print(f"  {step:<9} {value:7.1f}")
    print(f"  {'total':<9} {sum(figures.values()):7.1f}")


if __name__ == "__main__":
    main()
