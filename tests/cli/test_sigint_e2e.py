"""Ctrl-C (SIGINT) to ``imagegen generate`` and ``imagegen batch`` against real servers:
3 s later nothing of ours is queued or running there.

Run with ``IMAGEGEN_INVOKEAI_URL`` and/or ``IMAGEGEN_COMFYUI_URL`` set (model-free
templates: blurs of a blank image, several seconds of CPU work each).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

INVOKEAI = os.environ.get("IMAGEGEN_INVOKEAI_URL")
COMFYUI = os.environ.get("IMAGEGEN_COMFYUI_URL")

pytestmark = pytest.mark.e2e

INVOKEAI_SLOW = {
    "id": "e2e-sigint",
    "nodes": {
        "b": {"id": "b", "type": "blank_image", "width": 4000, "height": 4000},
        "blur1": {"id": "blur1", "type": "img_blur", "radius": 60, "is_intermediate": True},
        "blur2": {"id": "blur2", "type": "img_blur", "radius": 60, "blur_type": "box"},
    },
    "edges": [
        {
            "source": {"node_id": "b", "field": "image"},
            "destination": {"node_id": "blur1", "field": "image"},
        },
        {
            "source": {"node_id": "blur1", "field": "image"},
            "destination": {"node_id": "blur2", "field": "image"},
        },
    ],
}


def comfyui_slow() -> dict[str, Any]:
    """EmptyImage (a colour new to this run: nothing from the cache) -> 12 blurs -> SaveImage."""
    workflow: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": "{{width}}",
                "height": "{{height}}",
                "batch_size": 1,
                "color": uuid.uuid4().int & 0xFFFFFF,
            },
        }
    }
    for k in range(12):
        workflow[str(10 + k)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(9 + k) if k else "1", 0], "blur_radius": 31, "sigma": 10.0},
        }
    workflow["99"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["21", 0], "filename_prefix": "imagegen_e2e_sigint"},
    }
    return workflow


def _config(tmp_path: Path, backend: str) -> Path:
    if backend == "invokeai":
        (tmp_path / "graph.json").write_text(json.dumps(INVOKEAI_SLOW), encoding="utf-8")
        entry = {"class": "invokeai", "base_url": INVOKEAI, "graph_template": "graph.json"}
    else:
        (tmp_path / "workflow.json").write_text(json.dumps(comfyui_slow()), encoding="utf-8")
        address = str(COMFYUI).split("://", 1)[-1]
        entry = {"class": "comfyui", "server_address": address, "workflow_template": "wf.json"}
        entry["workflow_template"] = "workflow.json"
    path = tmp_path / "generators.yaml"
    path.write_text(json.dumps({"generators": {"slow": entry}}), encoding="utf-8")
    return path


def _interrupt(command: list[str], cwd: Path, ready: str, delay: float) -> tuple[int, str]:
    """Run the CLI, send SIGINT once stderr shows ``ready`` (our work is on the server)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from degrees37_imagegen.cli import main; main()", *command],
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if ready in line or not line:
            break
    time.sleep(delay)  # let the server start running it
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    return proc.wait(timeout=60), "".join(seen) + rest


def _ours_left_on_invokeai(ids: list[str]) -> list[str]:
    with httpx.Client(base_url=str(INVOKEAI), timeout=10) as client:
        left = []
        for item_id in ids:
            item = client.get(f"/api/v1/queue/default/i/{item_id}").json()
            if item["status"] in ("pending", "in_progress"):
                left.append(f"{item_id}: {item['status']}")
        return left


def _ours_left_on_comfyui(ids: list[str]) -> list[str]:
    with httpx.Client(base_url=f"http://{str(COMFYUI).split('://', 1)[-1]}", timeout=10) as c:
        queue = c.get("/queue").json()
        on_server = {item[1] for item in queue["queue_running"] + queue["queue_pending"]}
        return [i for i in ids if i in on_server]


BACKENDS = [
    pytest.param(
        "invokeai", marks=pytest.mark.skipif(not INVOKEAI, reason="IMAGEGEN_INVOKEAI_URL not set")
    ),
    pytest.param(
        "comfyui", marks=pytest.mark.skipif(not COMFYUI, reason="IMAGEGEN_COMFYUI_URL not set")
    ),
]


def _left(backend: str, ids: list[str]) -> list[str]:
    return _ours_left_on_invokeai(ids) if backend == "invokeai" else _ours_left_on_comfyui(ids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_to_generate_leaves_nothing_of_ours(tmp_path: Path, backend: str) -> None:
    _config(tmp_path, backend)
    code, err = _interrupt(
        ["generate", "x", "-c", "generators.yaml", "-g", "slow", "-W", "512", "-H", "512"],
        tmp_path,
        ready="submitted",
        delay=0.5,
    )
    assert code == 130, err
    ids = re.findall(r"canceled job (\S+) on slow", err)
    assert len(ids) == 1, err
    time.sleep(3)
    assert _left(backend, ids) == []
    print(f"    {backend}: {err.strip().splitlines()[-1]}; 3 s later nothing of ours is left")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_to_batch_leaves_nothing_of_ours(tmp_path: Path, backend: str) -> None:
    _config(tmp_path, backend)
    jobs = "\n".join(
        json.dumps({"prompt": f"scene {i}", "width": 512, "height": 512}) for i in range(6)
    )
    (tmp_path / "book.jsonl").write_text(jobs + "\n", encoding="utf-8")
    code, err = _interrupt(
        ["batch", "book.jsonl", "-c", "generators.yaml", "-g", "slow"],
        tmp_path,
        ready="job(s) into",
        delay=2.0,  # the first two jobs are on the server by then
    )
    assert code == 130, err
    found = re.search(r"interrupted: canceled (\d) job\(s\) of ours on the servers \((.+?)\)", err)
    assert found, err
    ids = found.group(2).split(", ")  # in flight; one may have just finished (not canceled)
    assert 1 <= int(found.group(1)) <= len(ids)
    time.sleep(3)
    assert _left(backend, ids) == []
    print(
        f"    {backend}: canceled {found.group(1)} of {len(ids)} job(s) in flight; "
        "3 s later nothing of ours is left"
    )
