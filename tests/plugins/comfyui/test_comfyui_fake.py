"""The fake answers as the real ComfyUI did: same messages in the same order, same bodies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from comfyui_fake import TEXT_500, FakeComfyUI, load_capture
from websockets.sync.client import ClientConnection, connect


def shape(message: dict[str, Any]) -> tuple[Any, ...]:
    """What must match between a capture and the fake: type, node, cached nodes, states."""
    kind, data = message["type"], message["data"]
    if kind == "status":
        return (kind, data["status"]["exec_info"]["queue_remaining"], "sid" in data)
    if kind in ("executing", "executed"):
        return (kind, data.get("node"), "prompt_id" in data)
    if kind == "execution_cached":
        return (kind, tuple(data["nodes"]))
    if kind == "progress_state":
        return (kind, tuple((n, s["state"]) for n, s in data["nodes"].items()))
    if kind in ("execution_error", "execution_interrupted"):
        return (kind, data["node_id"], data["node_type"])
    return (kind,)


def captured(name: str) -> list[tuple[Any, ...]]:
    messages = load_capture(name)["messages"]
    return [shape(m["msg"]) for m in messages if m.get("kind") == "text"]


def receive_until_done(ws: ClientConnection, prompt_id: str) -> list[dict[str, Any]]:
    got = []
    while True:
        raw = ws.recv(timeout=10)
        if isinstance(raw, bytes):
            continue
        message = json.loads(raw)
        got.append(message)
        data = message["data"]
        final = message["type"] == "executing" and data["node"] is None
        if final and data.get("prompt_id") == prompt_id:
            return got


def run(fake: FakeComfyUI, workflow: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    client_id = str(uuid.uuid4())
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId={client_id}") as ws:
        answer = httpx.post(
            f"{fake.url}/prompt", json={"prompt": workflow, "client_id": client_id}
        ).json()
        return answer, receive_until_done(ws, answer["prompt_id"])


def request_body(name: str) -> Any:
    return load_capture(name)["request"]["body"]["json"]


def response(name: str) -> Any:
    return load_capture(name)["response"]


def test_success_sequence_matches_the_capture(fake: FakeComfyUI) -> None:
    workflow = request_body("ok_512x512_post_prompt.json")["prompt"]
    answer, messages = run(fake, workflow)
    assert [shape(m) for m in messages] == captured("ok_512x512.ws.json")
    assert set(answer) == set(response("ok_512x512_post_prompt.json")["body"]["json"])
    history = httpx.get(f"{fake.url}/history/{answer['prompt_id']}").json()
    real = next(iter(response("ok_512x512_history.json")["body"]["json"].values()))
    mine = history[answer["prompt_id"]]
    assert set(mine) == set(real)
    assert mine["outputs"] == real["outputs"]
    assert [m[0] for m in mine["status"]["messages"]] == [m[0] for m in real["status"]["messages"]]
    assert mine["meta"] == real["meta"]


def test_identical_resubmission_is_cached_with_the_old_file(fake: FakeComfyUI) -> None:
    history = response("ok_1080x1920_repeat_cached_history.json")["body"]["json"]
    workflow = next(iter(history.values()))["prompt"][2]
    run(fake, workflow)
    answer, messages = run(fake, workflow)
    assert [shape(m) for m in messages] == captured("ok_1080x1920_repeat_cached.ws.json")
    entry = httpx.get(f"{fake.url}/history/{answer['prompt_id']}").json()[answer["prompt_id"]]
    assert entry["outputs"] == next(iter(history.values()))["outputs"]  # test_00001_.png


def test_execution_error_sequence_matches_the_capture(fake: FakeComfyUI) -> None:
    workflow = request_body("exec_error_imagescaleby_post_prompt.json")["prompt"]
    answer, messages = run(fake, workflow)
    mine = [shape(m) for m in messages]
    real = captured("exec_errors_part_a.ws.json")
    # The capture starts with the greeting; nodes 1 and 4 may run in either order.
    assert (
        mine[-3:]
        == real[-3:]
        == [
            ("execution_error", "2", "ImageScaleBy"),
            ("status", 0, False),
            ("executing", None, True),
        ]
    )
    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    real_entry = next(
        iter(response("exec_error_imagescaleby_history.json")["body"]["json"].values())
    )
    real_error = dict(real_entry["status"]["messages"])["execution_error"]
    assert set(error) == set(real_error)
    assert error["exception_message"] == real_error["exception_message"]
    entry = httpx.get(f"{fake.url}/history/{answer['prompt_id']}").json()[answer["prompt_id"]]
    assert entry["status"]["status_str"] == "error"
    assert entry["outputs"] == real_entry["outputs"]


def test_validation_answers_equal_the_captures(fake: FakeComfyUI) -> None:
    for name in (
        "err_missing_checkpoint.json",
        "err_value_above_max.json",
        "err_combo_not_in_list.json",
        "err_no_output_node.json",
        "err_unknown_class_type.json",
    ):
        real = response(name)
        got = httpx.post(f"{fake.url}/prompt", json=request_body(name))
        assert got.status_code == real["status"] == 400, name
        assert got.json() == real["body"]["json"], name
    for name in ("err_ui_format_workflow.json",):
        got = httpx.post(f"{fake.url}/prompt", json=request_body(name))
        assert (
            (got.status_code, got.text) == (500, response(name)["body"]["text"]) == (500, TEXT_500)
        )
    got = httpx.post(f"{fake.url}/prompt", content=b'{"prompt": {"1": ')
    assert (got.status_code, got.text) == (500, TEXT_500)


def test_routes_answer_like_the_captures(fake: FakeComfyUI) -> None:
    assert httpx.get(f"{fake.url}/queue").json() == response("get_queue_empty.json")["body"]["json"]
    unknown = "00000000-0000-0000-0000-000000000000"
    assert httpx.get(f"{fake.url}/history/{unknown}").json() == {}
    assert (
        httpx.get(f"{fake.url}/view", params={"filename": "nope.png", "type": "output"}).status_code
        == 404
    )
    assert (
        httpx.get(f"{fake.url}/view", params={"filename": "nope.png", "type": "bogus"}).status_code
        == 400
    )
    custom = request_body("burst_post_custom_prompt_id.json")
    assert httpx.post(f"{fake.url}/prompt", json=custom).json()["prompt_id"] == "my-custom-id-0001"


def test_reconnecting_with_the_same_client_id_replays_the_current_node(fake: FakeComfyUI) -> None:
    gate = fake.gate("ImageBlur")
    workflow = request_body("q1_post_long.json")["prompt"]
    client_id = str(uuid.uuid4())
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId={client_id}") as first:
        prompt_id = httpx.post(
            f"{fake.url}/prompt", json={"prompt": workflow, "client_id": client_id}
        ).json()["prompt_id"]
        assert fake.wait_until(lambda: fake.last_node_id == "10")
        first.close()
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId={client_id}") as second:
        greeting = [shape(json.loads(second.recv(timeout=5))) for _ in range(2)]
        real = captured("ws_reconnect_after.ws.json")[:2]
        assert greeting == [("status", 1, True), ("executing", "10", False)]
        assert real == [("status", 1, True), ("executing", "2", False)]
        gate.set()
        rest = receive_until_done(second, prompt_id)
    assert rest[-1]["data"] == {"node": None, "prompt_id": prompt_id}


def test_http_answers_match_the_captures(fake: FakeComfyUI) -> None:
    malformed = response("err_malformed_json.json")
    got = httpx.post(f"{fake.url}/prompt", content=b'{"prompt": {"1": ')
    assert (got.status_code, got.text) == (malformed["status"], malformed["body"]["text"])
    unknown = load_capture("get_history_unknown_id.json")
    got = httpx.get(unknown["request"]["url"].replace("http://127.0.0.1:8188", fake.url))
    assert got.json() == unknown["response"]["body"]["json"]
    missing = load_capture("get_view_missing.json")
    got = httpx.get(missing["request"]["url"].replace("http://127.0.0.1:8188", fake.url))
    assert (got.status_code, got.text) == (404, missing["response"]["body"]["text"])
    for name in ("q1_post_queue_delete.json", "q2_post_interrupt_targeted.json"):
        capture = load_capture(name)
        path = capture["request"]["url"].replace("http://127.0.0.1:8188", "")
        got = httpx.post(f"{fake.url}{path}", json=capture["request"]["body"]["json"])
        assert (got.status_code, got.text) == (200, capture["response"]["body"]["text"]), name


def test_view_and_queue_look_like_the_captures(fake: FakeComfyUI) -> None:
    gate = fake.gate("ImageBlur")
    long = request_body("q1_post_long.json")["prompt"]
    httpx.post(f"{fake.url}/prompt", json={"prompt": long, "client_id": "c"})
    short = request_body("ok_512x512_post_prompt.json")["prompt"]
    httpx.post(f"{fake.url}/prompt", json={"prompt": short, "client_id": "c"})
    assert fake.wait_until(lambda: fake.running is not None)
    mine = httpx.get(f"{fake.url}/queue").json()
    real = response("q1_queue_before_delete.json")["body"]["json"]
    for key in ("queue_running", "queue_pending"):
        item, real_item = mine[key][0], real[key][0]
        assert [type(x) for x in item] == [type(x) for x in real_item]
        assert item[3] == {"client_id": "c"}
    assert mine["queue_running"][0][2] == real["queue_running"][0][2]  # the same long prompt
    gate.set()
    assert fake.wait_until(lambda: len(fake.history) == 2)
    image = next(
        entry["outputs"]["2"]["images"][0]
        for entry in fake.history.values()
        if "2" in entry["outputs"]
    )
    got = httpx.get(f"{fake.url}/view", params=image)
    real_view = response("ok_1080x1920_view.json")
    assert got.status_code == real_view["status"]
    assert got.headers["Content-Type"] == real_view["headers"]["Content-Type"]
    assert got.headers["Content-Disposition"] == f'filename="{image["filename"]}"'


def test_targeted_interrupt_sequence_matches_the_capture(fake: FakeComfyUI) -> None:
    fake.gate("ImageBlur")
    workflow = request_body("q1_post_long.json")["prompt"]
    client_id = str(uuid.uuid4())
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId={client_id}") as ws:
        prompt_id = httpx.post(
            f"{fake.url}/prompt", json={"prompt": workflow, "client_id": client_id}
        ).json()["prompt_id"]
        assert fake.wait_until(lambda: fake.last_node_id == "10")
        httpx.post(f"{fake.url}/interrupt", json={"prompt_id": prompt_id})
        messages = receive_until_done(ws, prompt_id)
    real = captured("queue_interrupt_part2.ws.json")
    assert [shape(m) for m in messages][-4:] == real[-4:]
    entry = httpx.get(f"{fake.url}/history/{prompt_id}").json()[prompt_id]
    real_entry = next(iter(response("q1_history_interrupted.json")["body"]["json"].values()))
    assert entry["status"]["status_str"] == real_entry["status"]["status_str"] == "error"
    assert [m[0] for m in entry["status"]["messages"]] == [
        m[0] for m in real_entry["status"]["messages"]
    ]
    interrupted = entry["status"]["messages"][-1][1]
    assert set(interrupted) == set(real_entry["status"]["messages"][-1][1])
    assert (entry["outputs"], entry["meta"]) == (real_entry["outputs"], real_entry["meta"])
