"""End-to-end tests against a real InvokeAI 6 server (skipped unless one is named).

Run them with ``IMAGEGEN_INVOKEAI_URL=http://127.0.0.1:9090 python3 -m pytest
tests/plugins/invokeai -m e2e -v -s``; ``docs/generators/invokeai.md`` says how to start a
server. No model weights are needed: the images come from model-free graphs, and the
built-in SDXL and SD 1.x graphs are checked by the server accepting them and then failing
on the missing model with its own message.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import pytest
from test_invokeai_templates import WORKFLOW

from degrees37_imagegen import (
    ConfigError,
    GeneratorTimeoutError,
    InvalidRequestError,
    Progress,
    generate_to_file,
    read_png_text,
    verify_image,
)
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai.errors import InvokeAIRequestError, QueueItemError

URL = os.environ.get("IMAGEGEN_INVOKEAI_URL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="IMAGEGEN_INVOKEAI_URL is not set"),
]

BOARD = "degrees37-imagegen-e2e"
MISSING_MODEL = {
    "key": "00000000-0000-0000-0000-000000000000",
    "hash": "blake3:deadbeef",
    "name": "missing-sdxl",
    "base": "sdxl",
    "type": "main",
}
BLANK = {
    "id": "e2e-blank",
    "nodes": {
        "blank": {
            "id": "blank",
            "type": "blank_image",
            "width": "{{width}}",
            "height": "{{height}}",
            "color": {"r": 30, "g": 144, "b": 255, "a": 255},
        }
    },
    "edges": [],
}
SLOW = {
    "id": "e2e-slow",
    "nodes": {
        "b": {"id": "b", "type": "blank_image", "width": 6000, "height": 6000},
        "blur1": {"id": "blur1", "type": "img_blur", "radius": 80, "is_intermediate": True},
        "blur2": {"id": "blur2", "type": "img_blur", "radius": 80, "blur_type": "box"},
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


def say(*parts: object) -> None:
    print("   ", *parts, flush=True)


@pytest.fixture
def server() -> httpx.Client:
    with httpx.Client(base_url=URL, timeout=30) as client:
        yield client


@pytest.fixture
def make():
    made: list[InvokeAIGenerator] = []

    def make(**settings):
        gen = InvokeAIGenerator({"base_url": URL, **settings}, name="invokeai-e2e")
        made.append(gen)
        return gen

    yield make
    for gen in made:
        gen.close()


def test_connection_reads_the_version(make):
    gen = make()
    assert gen.test_connection() is True
    say(f"InvokeAI {gen.server_version} at {URL}")
    assert make(base_url=f"{URL}/not-the-api").test_connection() is False
    say("a base_url that answers the web UI's HTML is refused")


def test_model_free_template_makes_a_real_image_on_the_board(make, server, tmp_path):
    gen = make(graph_template=BLANK, board_name=BOARD)
    stages: list[str] = []
    t0 = time.perf_counter()
    result = generate_to_file(
        gen, tmp_path / "blank.png", "a blue card", width=1080, height=1920, seed=-1,
        on_progress=lambda p: stages.append(p.stage),
    )  # fmt: skip
    noticed = datetime.now()
    elapsed = time.perf_counter() - t0
    fmt, size = verify_image(result.path)
    assert (fmt, size) == ("PNG", (1080, 1920))
    text = read_png_text(result.path)
    assert text["imagegen:prompt"] == "a blue card"
    assert "invokeai_graph" in text
    info = gen.image_info(result.image_id)
    item = server.get(f"/api/v1/queue/default/i/{info.extra['queue_item']}").json()
    completed = datetime.strptime(item["completed_at"], "%Y-%m-%d %H:%M:%S.%f")
    board_id = gen.board_id(BOARD)
    on_board = server.get(f"/api/v1/boards/{board_id}/image_names").json()
    image_name = info.extra["image_name"]
    assert image_name in on_board
    assert result.image_id == str(info.extra["queue_item"])  # a job's id is its queue item
    say(f"job {result.image_id}: image {image_name} {size[0]}x{size[1]} seed {info.seed}, "
        f"{elapsed:.2f}s in all")  # fmt: skip
    say(f"stages: {' > '.join(stages)}")
    say(f"on board {BOARD!r} ({board_id}); server completed at {item['completed_at']}")
    say(f"completion noticed {(noticed - completed).total_seconds() * 1000:.0f} ms later")


def test_completion_is_noticed_quickly(make, server):
    gen = make(graph_template=BLANK)
    delays = []
    for _ in range(5):
        name = gen.generate_image("x", width=512, height=512)
        noticed = datetime.now()
        item_id = gen.image_info(name).extra["queue_item"]
        item = server.get(f"/api/v1/queue/default/i/{item_id}").json()
        completed = datetime.strptime(item["completed_at"], "%Y-%m-%d %H:%M:%S.%f")
        delays.append((noticed - completed).total_seconds() * 1000)
    say("ms from the server's completed_at to generate_image returning: "
        + ", ".join(f"{d:.0f}" for d in delays))  # fmt: skip
    assert all(d >= -5 for d in delays)  # never "before" the server finished (clock jitter)


def _follow_five(gen: InvokeAIGenerator, server: httpx.Client) -> tuple[list[float], list[int]]:
    """Make five small images; return ms from completed_at to the return, and the GETs of
    each queue item."""
    polls: list[int] = []
    call = gen._api.call

    def counting(method: str, path: str, **kwargs: object) -> object:
        if method == "GET" and path.startswith("/api/v1/queue/default/i/"):
            polls.append(int(path.rsplit("/", 1)[1]))
        return call(method, path, **kwargs)

    gen._api.call = counting  # type: ignore[method-assign]
    delays, counts = [], []
    for _ in range(5):
        name = gen.generate_image("x", width=512, height=512)
        noticed = datetime.now()
        item_id = gen.image_info(name).extra["queue_item"]
        item = server.get(f"/api/v1/queue/default/i/{item_id}").json()
        completed = datetime.strptime(item["completed_at"], "%Y-%m-%d %H:%M:%S.%f")
        delays.append((noticed - completed).total_seconds() * 1000)
        counts.append(polls.count(item_id))
    return delays, counts


def test_events_tell_of_completion_at_once(make, server):
    gen = make(graph_template=BLANK)
    delays, polls = _follow_five(gen, server)
    events = gen._events
    assert events is not None
    say(f"socket.io: live {events.live}, {events.connections} connection(s), "
        f"{events.events_received} events received, {events.drops} drops")  # fmt: skip
    shown = ", ".join(f"{d:.0f}" for d in delays)
    say(f"events on: ms from completed_at to generate_image returning: {shown}")
    say(f"events on: GETs of each queue item: {polls}")
    off_delays, off_polls = _follow_five(make(graph_template=BLANK, events=False), server)
    shown = ", ".join(f"{d:.0f}" for d in off_delays)
    say(f"events off (polling): ms from completed_at to returning: {shown}")
    say(f"events off (polling): GETs of each queue item: {off_polls}")
    assert events.live
    assert events.events_received > 0
    # The first look, then one after the final event (a slow poll would be a third, 1 s on).
    assert max(polls) <= 2
    assert statistics.median(delays) < 100  # an event's wake-up, not a 1 s poll


def test_events_report_the_running_node(make):
    gen = make(graph_template=BLANK)
    seen: list[Progress] = []
    gen.generate_image("x", width=256, height=256, on_progress=seen.append)
    running = [(p.message, p.node) for p in seen if p.stage == "running" and p.node]
    say(f"progress: {[(p.stage, p.message, p.node) for p in seen]}")
    assert ("blank_image", "blank") in running


def test_socket_cut_mid_item_reconnects_and_enqueues_once(make, server):
    gen = make(graph_template=SLOW)
    cut = threading.Event()

    def cut_on_the_blur(progress: Progress) -> None:
        sio = gen._events._sio if gen._events is not None else None
        ws = getattr(sio.eio, "ws", None) if sio is not None else None
        if progress.node == "blur1" and not cut.is_set() and ws is not None:
            cut.set()
            ws.sock.shutdown(socket.SHUT_RDWR)  # cut the TCP connection under it

    t0 = time.perf_counter()
    name = gen.generate_image("x", on_progress=cut_on_the_blur)
    elapsed = time.perf_counter() - t0
    assert cut.is_set()
    events = gen._events
    assert events is not None
    assert events.drops == 1
    item = server.get(f"/api/v1/queue/default/i/{gen.image_info(name).extra['queue_item']}")
    destination = item.json()["destination"]
    same = server.get("/api/v1/queue/default/list_all", params={"destination": destination})
    assert len(same.json()) == 1  # enqueued once
    end = time.monotonic() + 10
    while not events.live and time.monotonic() < end:
        time.sleep(0.05)
    assert events.live
    say(f"socket cut while blur1 ran; item {item.json()['item_id']} completed after "
        f"{elapsed:.1f}s, enqueued once")  # fmt: skip
    say(f"reconnected: {events.connections} connections, {events.drops} drop")


def test_board_is_reused_by_a_new_generator(make, server):
    first = make(graph_template=BLANK, board_name=BOARD).board_id(BOARD)
    again = make(graph_template=BLANK, board_name=BOARD).board_id(BOARD)
    boards = server.get("/api/v1/boards/", params={"all": "true"}).json()
    assert first == again
    assert [b["board_id"] for b in boards if b["board_name"] == BOARD] == [first]
    say(f"board {BOARD!r} found again: {first}, one board of that name on the server")


def test_output_of_another_size_is_fitted_to_the_request(make, tmp_path):
    fixed = json.loads(json.dumps(BLANK))
    fixed["nodes"]["blank"].update(width=512, height=512)
    gen = make(graph_template=fixed)
    result = generate_to_file(gen, tmp_path / "fit.png", "x", width=300, height=200)
    assert verify_image(result.path)[1] == (300, 200)
    text = read_png_text(result.path)
    assert text["imagegen:resized_from"] == "512x512"
    assert text["imagegen:generated_size"] == "512x512"
    say("server made 512x512; file is 300x200 (scaled and centre-cropped)")


def test_workflow_editor_file_runs(make, tmp_path):
    gen = make(graph_template=WORKFLOW)
    name = gen.generate_image("x", width=320, height=160)
    gen.download_image(name, tmp_path / "wf.png")
    assert verify_image(tmp_path / "wf.png")[1] == (320, 160)
    say(f"workflow-editor graph (blank 256x256 -> img_resize) gave {name} at 320x160")


def test_sdxl_graph_is_accepted_and_the_missing_model_reported(make, server):
    gen = make(default_model=MISSING_MODEL, style_preset="Photography (General)", board_name=BOARD)
    with pytest.raises(QueueItemError) as caught:
        gen.generate_image("a lighthouse at dusk", "blurry", width=1080, height=1920, seed=123)
    error = caught.value
    assert error.error_message == f"Unknown model: {MISSING_MODEL['key']}"
    item = server.get(f"/api/v1/queue/default/i/{error.item_id}").json()
    assert item["status"] == "failed"
    nodes = item["session"]["graph"]["nodes"]
    assert (nodes["noise"]["width"], nodes["noise"]["height"]) == (768, 1344)
    values = {v["node_path"]: v["value"] for v in item["field_values"]}
    assert values["seed"] == 123
    assert values["positive_prompt"].startswith("a lighthouse at dusk. photography")
    say(f"SDXL graph accepted as queue item {error.item_id} ({len(nodes)} nodes, noise 768x1344)")
    say(f"prompt sent: {values['positive_prompt']!r}")
    say(f"raised {type(error).__name__}: {error}")


def test_sd1_graph_is_accepted_too(make):
    gen = make(default_model={**MISSING_MODEL, "base": "sd-1", "name": "missing-sd15"})
    with pytest.raises(QueueItemError, match="Unknown model") as caught:
        gen.generate_image("a lighthouse", width=512, height=768)
    say(f"SD 1.x graph accepted as queue item {caught.value.item_id}; {caught.value}")


def test_model_name_lookup_lists_what_is_installed(make):
    with pytest.raises(ConfigError) as caught:
        make(default_model="sdxl-base").generate_image("x")
    assert caught.value.key == "default_model"
    say(f"raised ConfigError: {caught.value}")


def test_unknown_style_preset_lists_the_servers(make):
    with pytest.raises(InvalidRequestError, match="available: Anime") as caught:
        make(graph_template=BLANK, style_preset="Watercolour").generate_image("x")
    say(f"raised InvalidRequestError: {str(caught.value)[:140]}...")


def test_a_422_is_summarised(make):
    template = {
        "nodes": {
            "noise": {"id": "noise", "type": "noise", "width": "{{width}}", "height": "{{height}}"},
            "out": {"id": "out", "type": "blank_image", "width": 64, "height": 64},
        },
        "edges": [],
    }
    gen = make(graph_template=template, graph_output_node="out")
    with pytest.raises(InvokeAIRequestError) as caught:
        gen.generate_image("x", width=1001, height=1000)
    assert caught.value.status_code == 422
    assert "multiple of 8 (got 1001)" in str(caught.value)
    say(f"raised {type(caught.value).__name__}: {caught.value}")


def test_max_wait_cancels_the_item_on_the_server(make, server):
    gen = make(graph_template=SLOW, max_wait=0.3)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorTimeoutError) as caught:
        gen.generate_image("x")
    waited = time.perf_counter() - t0
    item_id = int(str(caught.value).split("job ")[1].split()[0])
    item = server.get(f"/api/v1/queue/default/i/{item_id}").json()
    assert item["status"] == "canceled"
    say(f"raised after {waited:.2f}s: {caught.value}; server says {item['status']!r}")
    busy = wait_until_idle(server)
    say(f"the running node of the canceled item kept the server busy {busy:.1f}s more")


def wait_until_idle(server: httpx.Client, limit: float = 120) -> float:
    """Wait until the server runs nothing (a canceled item's running node finishes anyway),
    so that later timings are fair; return how long that took."""
    t1 = time.perf_counter()
    while time.perf_counter() - t1 < limit:
        # An item shows canceled at once; the processor says when its node is done.
        status = server.get("/api/v1/queue/default/status").json()
        if not status["processor"]["is_processing"] and not status["queue"]["pending"]:
            break
        time.sleep(0.1)
    return time.perf_counter() - t1


def ours_on_server(server: httpx.Client, destination: str) -> list[dict]:
    """The queue items of one of our requests (found by its unique destination)."""
    items = server.get("/api/v1/queue/default/list_all", params={"destination": destination})
    return items.json()


# -- jobs as handles ---------------------------------------------------------------------


def test_submit_returns_while_the_server_is_busy(make, server):
    gen = make(graph_template=SLOW)
    t0 = time.perf_counter()
    slow = gen.submit("slow")
    quick = make(graph_template=BLANK).submit("queued behind it", width=256, height=256)
    submitted = time.perf_counter() - t0
    status = server.get("/api/v1/queue/default/status").json()["queue"]
    assert quick.refresh() == "queued"
    assert slow.status in ("queued", "running")
    say(f"two jobs submitted in {submitted:.2f}s while the server works "
        f"(server: {status['in_progress']} in progress, {status['pending']} pending); "
        f"job {quick.id} is {quick.status}")  # fmt: skip
    t1 = time.perf_counter()
    slow.wait(timeout=120)
    quick.wait(timeout=120)
    say(f"both done {time.perf_counter() - t1:.1f}s later")
    assert submitted < 2.0  # returned on acceptance, not after the slow blur ran


def test_a_job_is_attached_in_another_process_and_saved(make, tmp_path):
    gen = make(graph_template=BLANK, board_name=BOARD)
    job = gen.submit("attached elsewhere", width=640, height=360, seed=11)
    saved = json.dumps(job.to_dict())
    out = tmp_path / "attached.png"
    code = (
        "import json, sys; from degrees37_imagegen_invokeai import InvokeAIGenerator\n"
        "data = json.loads(sys.argv[1])\n"
        f"gen = InvokeAIGenerator({{'base_url': {URL!r}, 'graph_template': json.loads(sys.argv[3]),"
        f" 'board_name': {BOARD!r}}}, name='invokeai-e2e')\n"
        "job = gen.attach(data)\n"
        "print(job.wait(timeout=120).save(sys.argv[2]), job.info.seed)\n"
        "gen.close()\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, saved, str(out), json.dumps(BLANK)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert verify_image(out)[1] == (640, 360)
    text = read_png_text(out)
    # The blank graph takes no seed: the saved job says so, and so does the other process.
    assert (text["imagegen:prompt"], text["imagegen:seed"]) == ("attached elsewhere", "not used")
    say(f"job {job.id} submitted here, attached, waited and saved by another process "
        f"in {time.perf_counter() - t0:.2f}s: {proc.stdout.strip()}")  # fmt: skip


def test_cancel_of_a_queued_and_a_running_job_leaves_nothing_of_ours(make, server):
    wait_until_idle(server)
    running = make(graph_template=SLOW).submit("running")
    queued = make(graph_template=BLANK).submit("queued", width=256, height=256)
    end = time.monotonic() + 30
    while running.refresh() != "running" and time.monotonic() < end:
        time.sleep(0.05)
    assert (running.status, queued.refresh()) == ("running", "queued")
    assert queued.cancel() is True
    assert running.cancel() is True
    for job in (queued, running):
        items = ours_on_server(server, job.ref.data["destination"])
        assert [(i["item_id"], i["status"]) for i in items] == [(int(job.id), "canceled")]
        assert job.status == "canceled"
    busy = wait_until_idle(server)
    say(f"canceled queued job {queued.id} and running job {running.id}: both 'canceled' on "
        f"the server, nothing of ours pending or running; the running node finished "
        f"{busy:.1f}s later")  # fmt: skip


def test_threads_keep_the_queue_fed(make, tmp_path):
    gen = make(graph_template=BLANK, board_name=BOARD)
    names: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            for j in range(2):
                name = gen.generate_image(f"t{i}-{j}", width=256 + 8 * i, height=256)
                gen.download_image(name, tmp_path / f"{i}-{j}.png")
                with lock:
                    names.append(name)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert errors == []
    assert len(set(names)) == 8
    for i in range(4):
        for j in range(2):
            assert verify_image(tmp_path / f"{i}-{j}.png")[1] == (256 + 8 * i, 256)
    say(f"8 images from 4 threads on one generator in {elapsed:.2f}s ({elapsed / 8:.2f}s each)")


def test_cli_generate_shows_progress(tmp_path):
    config = tmp_path / "generators.yaml"
    (tmp_path / "blank.json").write_text(json.dumps(BLANK))
    config.write_text(
        f"generators:\n  invokeai:\n    base_url: {URL}\n    graph_template: blank.json\n"
        f"    board_name: {BOARD}\n"
    )
    out = tmp_path / "cli.png"
    args = ["generate", "a blue card", "--generator", "invokeai", "--config", str(config)]
    args += ["-W", "640", "-H", "360", "-o", str(out)]
    code = "import sys; from degrees37_imagegen.cli import main; sys.exit(main())"
    # The progress line is drawn only on a terminal: give stderr a pseudo-terminal.
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE, stderr=follower, cwd=tmp_path, text=True,
    )  # fmt: skip
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(leader)
    lines = [line.strip() for line in drawn.decode().split("\r") if line.strip()]
    say(f"imagegen generate exit {proc.returncode}, stdout: {stdout.strip()}")
    for line in lines:
        say(f"stderr: {line}")
    assert proc.returncode == 0
    assert verify_image(out)[1] == (640, 360)
    assert any("invokeai: running" in line for line in lines)


def test_a_job_saved_before_sending_is_found_by_its_key(make, server):
    """The item's destination carries the request's key: a job journaled before it was sent
    is found by a fresh generator (list_all?destination=), never enqueued again."""
    saved = []
    job = make(graph_template=BLANK).submit("x", width=64, height=64, on_sending=saved.append)
    assert saved[0]["id"] is None
    again = make(graph_template=BLANK).attach(saved[0])
    again.wait(timeout=60)
    say(f"saved before sending, found by key: item {again.id} ({again.status})")
    assert again.id == job.id
    assert again.status == "done"
    items = server.get(
        "/api/v1/queue/default/list_all", params={"destination": job.ref.data["destination"]}
    ).json()
    assert len(items) == 1  # enqueued once
