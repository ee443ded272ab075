"""The pure rules, table by table: messages -> updates, answers -> updates, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from comfyui_fake import load_capture

from degrees37_imagegen import (
    AuthenticationError,
    GeneratorConnectionError,
    GeneratorLimitError,
    JobCanceledError,
    JobFailedError,
    ServerError,
)
from degrees37_imagegen_comfyui import (
    ComfyUIExecutionError,
    ComfyUIInterruptedError,
    ComfyUIServerError,
    ComfyUIValidationError,
)
from degrees37_imagegen_comfyui._errors import http_error
from degrees37_imagegen_comfyui._monitor import KINDS, PromptTracker, decode
from degrees37_imagegen_comfyui._protocol import (
    cancel_action,
    canceled_by_us,
    history_entry,
    history_update,
    prompt_body,
    queue_state,
    read_request,
)
from degrees37_imagegen_comfyui._workflow import WorkflowTemplate

P = "ours"
CLASSES = {"1": "EmptyImage", "3": "KSampler", "9": "SaveImage"}


def msg(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data}


def status(remaining: int, sid: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": remaining}}}
    if sid:
        data["sid"] = "x"
    return {"type": "status", "data": data}


# message -> (status, stage, message, node) of the update, or None for "nothing new"
TABLE: list[tuple[dict[str, Any], tuple[Any, ...] | None]] = [
    (status(3), ("queued", "queued", "3 in the server's queue", None)),
    (status(1, sid=True), None),  # the greeting on connecting
    (status(0), None),
    (msg("execution_start", prompt_id=P), ("running", "running", "started", None)),
    (msg("execution_start", prompt_id="theirs"), None),
    (
        msg("execution_cached", nodes=["1"], prompt_id=P),
        ("running", "running", "1 nodes from cache", None),
    ),
    (msg("execution_cached", nodes=[], prompt_id=P), None),
    (msg("executing", node="3", prompt_id=P), ("running", "running", "node 1 of 3", "3 KSampler")),
    (msg("executing", node="3"), ("running", "running", "node 1 of 3", "3 KSampler")),  # replay
    (msg("executing", node="3", prompt_id="theirs"), None),
    (
        msg("progress", value=2, max=5, node="3", prompt_id=P),
        ("running", "step", "step 2/5", "3 KSampler"),
    ),
    (msg("progress", value=2, max=5, node="3", prompt_id="theirs"), None),
    (msg("executed", node="9", output={"images": []}, prompt_id=P), None),
    (msg("progress_state", nodes={}, prompt_id=P), None),
    (msg("execution_success", prompt_id=P), ("done", None, None, None)),
    (msg("executing", node=None, prompt_id=P), ("done", None, None, None)),
    (msg("executing", node=None, prompt_id="theirs"), None),
    (msg("executing", node=None), None),  # without our id it is not our end
    (msg("execution_error", prompt_id="theirs", node_id="2", node_type="X"), None),
    (msg("something_new", prompt_id=P), None),
    ({"type": "status"}, None),
]


@pytest.mark.parametrize(("message", "expected"), TABLE)
def test_message_to_update(message: dict[str, Any], expected: tuple[Any, ...] | None) -> None:
    update = PromptTracker(P, CLASSES, generator="g").handle(message)
    if expected is None:
        assert update is None
        return
    assert update is not None
    progress = update.progress
    got = (
        update.status,
        progress.stage if progress else None,
        progress.message if progress else None,
        progress.node if progress else None,
    )
    assert got == expected
    if progress is not None:
        assert progress.generator == "g"


def test_error_and_interrupt_messages_end_the_prompt() -> None:
    tracker = PromptTracker(P, CLASSES)
    data = {"prompt_id": P, "node_id": "3", "node_type": "KSampler", "exception_message": "boom"}
    update = tracker.handle(msg("execution_error", **data))
    assert update is not None
    assert update.status == "failed"
    assert isinstance(update.error, ComfyUIExecutionError)
    assert isinstance(update.error, JobFailedError)
    assert (update.error.error_type, update.error.error_message) == ("KSampler", "boom")
    assert update.error.work == "ran"
    assert tracker.handle(msg("executing", node="3", prompt_id=P)) is None  # over
    tracker = PromptTracker(P, CLASSES)
    update = tracker.handle(msg("execution_interrupted", **data))
    assert update is not None
    assert update.status == "canceled"
    assert isinstance(update.error, ComfyUIInterruptedError)
    assert isinstance(update.error, JobCanceledError)


def test_status_after_the_start_is_not_queue_news() -> None:
    tracker = PromptTracker(P, CLASSES)
    assert tracker.handle(status(2)) is not None
    assert tracker.handle(status(2)) is None  # the same number again
    tracker.handle(msg("execution_start", prompt_id=P))
    assert tracker.handle(status(5)) is None


def test_captured_conversation_gives_nodes_then_done() -> None:
    messages = [
        m["msg"] for m in load_capture("ok_512x512.ws.json")["messages"] if m.get("kind") == "text"
    ]
    prompt_id = load_capture("ok_512x512_post_prompt.json")["response"]["body"]["json"]["prompt_id"]
    tracker = PromptTracker(prompt_id, {"1": "EmptyImage", "2": "SaveImage"})
    updates = [u for u in map(tracker.handle, messages) if u is not None]
    assert updates[-1].status == "done"
    nodes = [u.progress.node for u in updates if u.progress and u.progress.node]
    assert nodes == ["1 EmptyImage", "2 SaveImage"]


def test_decode() -> None:
    assert decode('{"type": "status", "data": {}}') == {"type": "status", "data": {}}
    assert decode(b"\x00\x00\x00\x01") is None  # a binary preview
    assert decode("not json") is None
    assert decode("[1, 2]") is None
    assert decode('{"type": ["status"], "data": {}}') is None


WS_CAPTURES = (
    "exec_errors_part_a.ws.json",
    "ok_1080x1920_repeat_cached.ws.json",
    "ok_512x512.ws.json",
    "queue_interrupt_part2.ws.json",
    "ws_reconnect_after.ws.json",
)


@pytest.mark.parametrize("name", WS_CAPTURES)
def test_decode_skips_only_messages_that_change_nothing(name: str) -> None:
    """Each captured message, written as ComfyUI writes it: those of a type in KINDS come
    back as they are; the others (progress_state) are skipped, and a tracker of their
    prompt (started or not) would have made nothing of them either."""
    texts = [m["msg"] for m in load_capture(name)["messages"] if m.get("kind") == "text"]
    skipped = 0
    for message in texts:
        raw = json.dumps(message)  # as ComfyUI's send_json writes it
        if message["type"] in KINDS:
            assert decode(raw) == message
            continue
        skipped += 1
        assert decode(raw) is None
        assert decode(json.dumps(message, separators=(",", ":"))) is None  # parsed, then known
        prompt_id = message["data"].get("prompt_id")
        for started in (False, True):
            tracker = PromptTracker(str(prompt_id), {})
            tracker.started = started
            assert tracker.handle(message) is None
    assert skipped == sum(1 for m in texts if m["type"] not in KINDS)


def test_decode_parses_any_frame_that_may_be_of_a_known_type() -> None:
    """Only a frame whose one type can be read off its start is skipped unparsed: an escaped
    type, or a second "type" key (JSON keeps the last), is parsed."""
    escaped = '{"type": "execut\\u0069ng", "data": {"node": "3", "prompt_id": "p"}}'
    assert decode(escaped) == {"type": "executing", "data": {"node": "3", "prompt_id": "p"}}
    twice = '{"type": "progress_state", "data": {}, "type": "execution_start"}'
    assert decode(twice) == {"type": "execution_start", "data": {}}
    assert decode('{"type": "progress_state", "data": {"nodes": {}}}') is None
    assert decode('{"type": "progress_state", "data": ') is None  # cut short: as before


# -- HTTP answers ---------------------------------------------------------------------------


def history_of(name: str) -> tuple[str, dict[str, Any]]:
    answer = load_capture(name)["response"]["body"]["json"]
    (prompt_id,) = answer
    entry = history_entry(answer, prompt_id)
    assert entry is not None
    return prompt_id, entry


def test_success_history_is_done_with_images_and_what_was_used() -> None:
    prompt_id, entry = history_of("ok_512x512_history.json")
    data = {"seed_used": False, "model": "m.safetensors", "extra": {"workflow": "w"}}
    update = history_update(entry, prompt_id, data)
    assert update.status == "done"
    assert update.result["images"][0]["filename"].endswith(".png")
    assert update.result["index"] == 0
    assert (update.seed_used, update.model) == (False, "m.safetensors")
    assert update.extra == {"prompt_id": prompt_id, "workflow": "w"}


def test_cached_history_says_so() -> None:
    prompt_id, entry = history_of("ok_1080x1920_repeat_cached_history.json")
    update = history_update(entry, prompt_id)
    assert update.status == "done"
    assert update.extra["cached"] is True
    assert update.result["images"][0]["filename"] == "test_00001_.png"


def test_error_and_interrupted_histories() -> None:
    prompt_id, entry = history_of("exec_error_imagescaleby_history.json")
    update = history_update(entry, prompt_id)
    assert update.status == "failed"
    assert isinstance(update.error, ComfyUIExecutionError)
    assert "node 2 (ImageScaleBy)" in str(update.error)
    prompt_id, entry = history_of("q1_history_interrupted.json")
    update = history_update(entry, prompt_id)
    assert update.status == "canceled"
    assert isinstance(update.error, ComfyUIInterruptedError)


def test_a_cancel_is_judged_by_how_the_prompt_ended() -> None:
    # Finished anyway (started before the delete, or past the interrupt): not canceled.
    assert canceled_by_us(history_of("ok_512x512_history.json")[1]) is False
    assert canceled_by_us(history_of("q1_history_interrupted.json")[1]) is True
    assert canceled_by_us(history_of("exec_error_imagescaleby_history.json")[1]) is True
    assert canceled_by_us(None) is None  # no history yet: deleted, or still stopping


def test_history_without_images_failed() -> None:
    entry = {"outputs": {}, "status": {"status_str": "success", "completed": True}}
    update = history_update(entry, "p")
    assert update.status == "failed"
    assert "made no image" in str(update.error)


def test_unknown_history_is_empty() -> None:
    answer = load_capture("get_history_unknown_id.json")["response"]["body"]["json"]
    assert history_entry(answer, "whatever") is None


def test_queue_states_and_what_cancels_them() -> None:
    queue = load_capture("q1_queue_before_delete.json")["response"]["body"]["json"]
    running_id = queue["queue_running"][0][1]
    pending_id = queue["queue_pending"][0][1]
    running = queue_state(queue, running_id)
    assert (running.where, running.client_id) == (
        "running",
        queue["queue_running"][0][3]["client_id"],
    )
    assert cancel_action(running) == "interrupt"
    pending = queue_state(queue, pending_id)
    assert (pending.where, pending.position) == ("pending", 1)
    assert cancel_action(pending) == "delete"
    gone = queue_state(queue, "not-there")
    assert gone.where is None
    assert cancel_action(gone) is None
    assert queue_state(None, "x").where is None


def test_position_follows_the_numbers_not_the_list_order() -> None:
    queue = {
        "queue_running": [],
        "queue_pending": [[7, "c", {}, {}, []], [5, "a", {}, {}, []], [6, "b", {}, {}, []]],
    }
    assert [queue_state(queue, p).position for p in "abc"] == [1, 2, 3]


def test_prompt_body_names_our_ids() -> None:
    assert prompt_body({"1": {}}, "client", "prompt") == {
        "prompt": {"1": {}},
        "client_id": "client",
        "prompt_id": "prompt",
    }


def test_read_request_back_from_a_submitted_workflow() -> None:
    template = WorkflowTemplate(
        {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": "{{width}}", "height": 64, "color": 0},
            },
            "2": {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": "{{prompt}}", "clip": ["3", 0]},
            },
            "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
        },
        mapping={"height": "1.height"},
    )
    submitted = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 320, "height": 200, "color": 0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["3", 0]}},
    }
    found = read_request(submitted, template.targets, template.placeholders)
    assert found == {"prompt": "a cat", "width": 320, "height": 200}


# -- error bodies -> errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, ServerError),
        (429, GeneratorLimitError),
        (502, GeneratorConnectionError),
        (500, ComfyUIServerError),
        (418, ComfyUIServerError),
    ],
)
def test_http_errors(status: int, kind: type[Exception]) -> None:
    error = http_error(status, "body text", request="GET /queue", server="http://h", work="queued")
    assert type(error) is kind
    assert error.work == "queued"
    if isinstance(error, ServerError):
        assert (error.status, error.body) == (status, "body text")
    assert "\n" not in str(error)


def test_validation_error_is_one_line_and_a_server_error() -> None:
    body = load_capture("err_missing_checkpoint.json")["response"]["body"]["json"]
    error = ComfyUIValidationError(body["error"], body["node_errors"], body="{...}")
    assert isinstance(error, ServerError)
    assert isinstance(error, ValueError)
    assert (error.status, error.work) == (400, "not_sent")
    assert "\n" not in str(error)
    assert "node 1 (CheckpointLoaderSimple): ckpt_name:" in str(error)


def test_a_prompt_the_messages_said_succeeded_is_done_when_history_is_gone() -> None:
    from degrees37_imagegen_comfyui._monitor import PromptTracker, told_entry

    tracker = PromptTracker("p1", {"1": "EmptyImage", "2": "SaveImage"})
    saved = {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]}
    assert told_entry(tracker, {"2": saved}) is None  # not over yet: lost, if gone
    tracker.handle({"type": "execution_success", "data": {"prompt_id": "p1"}})
    assert told_entry(tracker, {}) is None  # nothing said what it saved
    update = history_update(told_entry(tracker, {"2": saved}) or {}, "p1")
    assert update.status == "done"
    assert update.result["images"][0]["filename"] == "a_00001_.png"
