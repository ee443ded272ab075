"""What ``imagegen batch --dry-run`` imports: nothing it does not use (issue 11: a dry run
of 1,000 jobs in under 0.5 s of CPU; ``benchmarks/client_cpu.py`` measures it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("degrees37_imagegen_comfyui")
pytest.importorskip("degrees37_imagegen_invokeai")

UNUSED = ["httpx", "asyncio", "aiohttp", "socketio", "engineio", "websockets", "PIL"]

PROBE = """
import sys
from degrees37_imagegen.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("IMPORTED", sorted(m for m in {unused!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("plugin", ["comfyui", "invokeai"])
def test_a_dry_run_imports_no_network_code(tmp_path: Path, plugin: str) -> None:
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps({"1": {"class_type": "SaveImage", "inputs": {}}}))
    entry: dict[str, object] = {
        "class": plugin,
        "servers": ["http://127.0.0.1:9", "http://127.0.0.1:10"],
    }
    if plugin == "comfyui":
        entry["workflow_template"] = str(workflow)
    else:
        entry["default_model"] = "sdxl-base-1.0"
    (tmp_path / "generators.yaml").write_text(json.dumps({"generators": {"g": entry}}))
    jobs = [json.dumps({"prompt": f"p{i}", "width": 64, "height": 64}) for i in range(5)]
    (tmp_path / "jobs.jsonl").write_text("\n".join(jobs) + "\n")
    command = [sys.executable, "-c", PROBE.format(unused=UNUSED), "batch", "jobs.jsonl"]
    command += ["-c", "generators.yaml", "-g", "g", "--dry-run", "--json"]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, env={**os.environ}, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 5
    assert "IMPORTED []" in done.stderr, done.stderr
