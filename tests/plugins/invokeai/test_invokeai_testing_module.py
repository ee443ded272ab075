"""``degrees37_imagegen_invokeai.testing``, used as a user would: no helper from tests/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

import degrees37_imagegen_invokeai
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai import testing as invoke_testing
from degrees37_imagegen_invokeai.testing import (
    BLANK_TEMPLATE,
    FakeInvokeAI,
    model_record,
    running_fake,
)


@pytest.mark.parametrize("events", [False, True])
def test_a_generator_submits_waits_and_saves(events: bool, tmp_path: Path) -> None:
    with running_fake(events=events) as fake:
        config = {"base_url": fake.base_url, "graph_template": BLANK_TEMPLATE, "events": events}
        with InvokeAIGenerator(config) as generator:
            job = generator.submit("ignored", width=512, height=768, seed=7)
            job.wait(timeout=10).save(tmp_path / "blank.png")
        (batch,) = fake.enqueued
    with Image.open(tmp_path / "blank.png") as image:
        assert image.size == (512, 768)
    assert batch["batch"]["graph"]["nodes"]["blank"]["height"] == 768
    assert (("SOCKET.IO", "subscribe_queue default") in fake.calls) is events


def test_one_generator_through_its_transport(tmp_path: Path) -> None:
    fake = FakeInvokeAI()  # no global mock: only this generator reaches the fake
    fake.add_fault("download", "truncated")
    config = {"base_url": fake.base_url, "graph_template": BLANK_TEMPLATE, "events": False}
    with InvokeAIGenerator(config, transport=fake.transport) as generator:
        job = generator.submit("x", width=64, height=64).wait(timeout=10)
        job.save(tmp_path / "x.png")  # the core downloads the truncated image again
    image_name = job.info.extra["image_name"] if job.info else ""
    assert fake.count("GET", f"/api/v1/images/i/{image_name}/full") == 2


def test_a_graph_the_server_would_refuse_fails_at_once() -> None:
    fake = FakeInvokeAI()
    bad = {"batch": {"graph": {"id": "g", "nodes": {}, "edges": []}, "runs": 1}, "junk": 1}
    with (
        httpx.Client(transport=fake.transport, base_url=fake.base_url) as client,
        pytest.raises(AssertionError, match="invalid graph"),
    ):
        client.post("/api/v1/queue/default/enqueue_batch", json=bad)


def test_a_model_record_is_a_model_the_fake_has() -> None:
    with running_fake(models=[model_record("Juggernaut XL v9", key="k1")]) as fake:
        answer = httpx.get(f"{fake.base_url}/api/v2/models/").json()
    assert [m["key"] for m in answer["models"]] == ["k1"]


def test_the_captures_are_package_data_not_the_tests() -> None:
    package = Path(degrees37_imagegen_invokeai.__file__).parent
    assert Path(str(invoke_testing.CAPTURES)) == package / "_captures"
    assert FakeInvokeAI().captures.folder == invoke_testing.CAPTURES
    assert (package / "_captures" / "openapi.json").is_file()


def test_importing_it_needs_no_respx() -> None:
    code = (
        "import sys; sys.modules['respx'] = None\n"
        "import degrees37_imagegen_invokeai.testing as t\n"
        "print(len(t.__all__))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
