"""Following queue items by InvokeAI's socket.io events, with polling as the fallback.

The fake here pushes the events a real InvokeAI 6.14.2 pushed (``socketio_fake.py``, built
from ``captures/rec_socketio_*.json``) on a real loopback WebSocket, while its HTTP is
mocked. Items run by themselves once enqueued (``run_after_polls = 0``), as on the real
server, so the generator can only learn of the end from an event or from a slow poll; the fake
clock tells which: a wait that ended with an event moves no fake time.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import threading

import pytest
from invokeai_fake import CAPTURES, QUEUE, model_record

from degrees37_imagegen import ConfigError, GeneratorTimeoutError, Progress
from degrees37_imagegen.errors import JobCanceledError
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai._events import socket_address
from degrees37_imagegen_invokeai._messages import (
    News,
    completed_image,
    ended_status,
    event_progress,
    event_update,
    read_event,
)
from degrees37_imagegen_invokeai._queue import ItemFacts, told_update
from degrees37_imagegen_invokeai._schedule import PollState
from degrees37_imagegen_invokeai.errors import QueueItemError

SDXL_KEY = "5b5a8c1e-0000-4000-8000-00000000sdxl"
TOKEN = "s3cr3t-t0ken-value"


@pytest.fixture
def fake(live_fake):
    """The fake InvokeAI with a socket.io endpoint (``make_generator`` uses it)."""
    live_fake.models = [model_record("sdxl-base", "sdxl", key=SDXL_KEY)]
    return live_fake


@pytest.fixture
def sio(fake):
    """The fake's socket.io endpoint."""
    return fake.sio


@pytest.fixture
def runs_by_itself(fake):
    """Items stay pending on polls and run by themselves once enqueued, pushing their
    events."""
    fake.script = ["pending"]
    fake.run_after_polls = 0
    return fake


def image_of(gen, image_id: str) -> str:
    """The server's image name of a job (the job id is its queue item id)."""
    return gen.image_info(image_id).extra["image_name"]


def item_polls(fake, item_id: int) -> int:
    return fake.count("GET", f"{QUEUE}/i/{item_id}")


def recorded_frames() -> list[dict]:
    """The frames the real server sent in ``rec_socketio_items.json``."""
    frames = json.loads((CAPTURES / "rec_socketio_items.json").read_text())["frames"]
    return [f for f in frames if f["dir"] == "recv"]


# -- the protocol, from the recorded frames ---------------------------------------------


def test_socket_address_follows_base_url():
    assert socket_address("http://127.0.0.1:9090") == ("http://127.0.0.1:9090", "/ws/socket.io")
    assert socket_address("https://studio.example/invoke/") == (
        "https://studio.example",
        "/invoke/ws/socket.io",
    )


def recorded_events() -> list[tuple[str, dict]]:
    return [
        tuple(json.loads(f["text"][2:])) for f in recorded_frames() if f["text"].startswith("42")
    ]


def test_recorded_events_say_whom_they_concern_and_when_to_look():
    events = recorded_events()
    ended = next(
        d for n, d in events if n == "queue_item_status_changed" and d["status"] == "completed"
    )
    # Look now; the event also says how it ended (the image is known from its own event).
    assert read_event("queue_item_status_changed", ended) == [
        News(ended["item_id"], look=True, event=("queue_item_status_changed", ended))
    ]
    assert ended_status("queue_item_status_changed", ended, ended["destination"]) == "completed"
    assert ended_status("queue_item_status_changed", ended, None) == "completed"
    assert ended_status("queue_item_status_changed", ended, "another") is None
    running = next(
        d for n, d in events if n == "queue_item_status_changed" and d["status"] == "in_progress"
    )
    (news,) = read_event("queue_item_status_changed", running)
    assert (news.item_id, news.look, news.event[0]) == (
        running["item_id"],
        False,
        "queue_item_status_changed",
    )
    started = next(d for n, d in events if n == "invocation_started")
    (news,) = read_event("invocation_started", started)
    assert (news.item_id, news.look) == (started["item_id"], False)
    complete = next(d for n, d in events if n == "invocation_complete")
    # Kept for the item's watch: it names the image, should the item be pruned unseen.
    assert read_event("invocation_complete", complete) == [
        News(complete["item_id"], event=("invocation_complete", complete))
    ]
    name = complete["result"]["image"]["image_name"]
    ours = complete["destination"]
    assert completed_image(complete, "blank", ours) == (name, 512, 512)
    assert completed_image(complete, "blank", None) == (name, 512, 512)
    assert completed_image(complete, "other-node", ours) is None
    assert completed_image(complete, "blank", ours + "-not") is None  # a same-id stranger
    assert read_event("queue_cleared", {"queue_id": "default"}) == [News(None, look=True)]
    assert read_event(
        "queue_items_canceled", {"queue_id": "default", "canceled_item_ids": [3, 4]}
    ) == [
        News(3, look=True),
        News(4, look=True),
    ]
    assert read_event("queue_item_status_changed", {**ended, "queue_id": "other"}) == []
    assert read_event("invocation_started", None) == []


def test_events_end_a_job_without_a_read_only_when_completed_with_its_image():
    events = recorded_events()
    complete = next(d for n, d in events if n == "invocation_complete" and d["item_id"] == 134)
    image = completed_image(complete, "blank", complete["destination"])
    facts = ItemFacts("blank", model="m")
    told = told_update(134, "completed", image, facts)
    assert told is not None
    assert (told.status, told.result, told.model) == (
        "done",
        {"image_name": image[0], "item_id": 134, "size": [512, 512]},
        "m",
    )
    assert told_update(134, "completed", None, facts) is None  # no image named: read
    # Item 136 was canceled while its output node ran, and its invocation_complete came
    # after: only the status says it is not done.
    order = [(n, d.get("status")) for n, d in events if d.get("item_id") == 136][-2:]
    assert order == [("queue_item_status_changed", "canceled"), ("invocation_complete", None)]
    assert told_update(136, "canceled", image, facts) is None
    assert told_update(134, "failed", image, facts) is None
    assert told_update(134, None, image, facts) is None


def test_an_item_enqueued_while_subscribed_is_read_when_events_say_or_a_second_later():
    live = PollState()
    live.enqueued(10.0, events_live=True)  # the enqueue's answer stands for a first look
    assert not live.due(10.5, events_live=True, look=False, poll_interval=0.1)
    assert live.due(10.5, events_live=True, look=True, poll_interval=0.1)
    assert live.due(11.0, events_live=True, look=False, poll_interval=0.1)
    # The socket gone (it also says look): a pending item's schedule, every 0.25 s.
    assert not live.due(10.2, events_live=False, look=False, poll_interval=0.1)
    assert live.due(10.3, events_live=False, look=False, poll_interval=0.1)
    quiet = PollState()
    quiet.enqueued(10.0, events_live=False)  # no socket: read at once, as before
    assert quiet.due(10.0, events_live=False, look=False, poll_interval=0.1)


def test_events_become_progress():
    events = recorded_events()
    started = next(d for n, d in events if n == "invocation_started" and d["item_id"] == 134)
    saving = next(d for n, d in events if n == "invocation_progress" and d["item_id"] == 134)
    progress = event_progress("invocation_started", started, steps=None, generator="g")
    assert (progress.stage, progress.node, progress.message) == ("running", "blank", "blank_image")
    progress = event_progress("invocation_progress", saving, steps=30, generator="g")
    assert (progress.stage, progress.message) == ("running", "Saving image")
    denoising = {**saving, "message": "Denoising", "percentage": 0.4}
    progress = event_progress("invocation_progress", denoising, steps=30, generator="g")
    assert (progress.stage, progress.step, progress.total) == ("step", 12, 30)
    assert progress.message == "Denoising step 12/30"
    progress = event_progress("invocation_progress", denoising, steps=None, generator="g")
    assert (progress.step, progress.total) == (40, 100)
    assert event_progress("invocation_complete", started, steps=None, generator="g") is None


def test_events_mean_job_states():
    events = recorded_events()
    running = next(
        d for n, d in events if n == "queue_item_status_changed" and d["status"] == "in_progress"
    )
    assert (
        event_update("queue_item_status_changed", running, steps=None, generator="g").status
        == "running"
    )
    ended = {**running, "status": "completed"}
    assert event_update("queue_item_status_changed", ended, steps=None, generator="g") is None
    started = next(d for n, d in events if n == "invocation_started")
    update = event_update("invocation_started", started, steps=None, generator="g")
    assert (update.status, update.progress.stage) == ("running", "running")


def test_events_must_be_true_or_false():
    with pytest.raises(ConfigError) as caught:
        InvokeAIGenerator({"events": "yes"})
    assert caught.value.key == "events"


# -- completion by event ----------------------------------------------------------------


def test_completion_is_learned_from_the_event(fake, runs_by_itself, make_generator, clock):
    seen: list[Progress] = []
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("a lighthouse", on_progress=seen.append)

    assert image_of(gen, name) == fake.items[1].image_name
    # Never read: the enqueue's answer stood for a first look (subscribed before it), and
    # the final events named the image and said it completed.
    assert item_polls(fake, 1) == 0
    assert clock.slept == []  # no fake time passed: every wait ended with an event
    # Subscribed before the enqueue, so no event of the item could be missed.
    order = [path for _, path in fake.calls]
    assert order.index("subscribe_queue default") < order.index(f"{QUEUE}/enqueue_batch")
    stages = [p.stage for p in seen]
    assert stages[:2] == ["submitted", "running"]
    steps = [(p.step, p.total) for p in seen if p.stage == "step"]
    assert steps == [(k, 30) for k in range(31)]  # the graph's 30 steps, from its events
    nodes = [p.node for p in seen if p.stage == "running" and p.node]
    assert "denoise_latents" in nodes
    assert "canvas_output" in nodes
    assert gen._events.events_received > 0


def test_failed_item_is_learned_from_the_event(fake, runs_by_itself, make_generator, clock):
    missing = {"key": "00000000-0000-0000-0000-000000000000", "hash": "blake3:deadbeef"}
    gen = make_generator(default_model={**missing, "name": "gone", "base": "sdxl", "type": "main"})
    with pytest.raises(QueueItemError) as caught:
        gen.generate_image("x")
    assert caught.value.error_message == "Unknown model: 00000000-0000-0000-0000-000000000000"
    assert item_polls(fake, 1) == 1  # read once, after the event, for InvokeAI's error
    assert clock.slept == []
    fake.wait_for_runners()
    assert [e[0] for e in fake.sio.emitted][-2:] == [
        "queue_item_status_changed",
        "invocation_error",
    ]


def test_queue_cleared_wakes_the_waiter(fake, make_generator, clock):
    fake.script = ["pending"]
    gen = make_generator(default_model="sdxl-base")

    def clear_the_queue(progress: Progress) -> None:
        if progress.stage == "submitted":  # someone clears the queue: no per-item event
            with fake.lock:
                fake.items.clear()
            fake.sio.emit("queue_cleared", {"timestamp": 0, "queue_id": "default", "user_id": None})
            # Watched since the enqueue (the socket is live), and not read before an event
            # says to: let the event arrive before the job's first wait.
            watch = gen._follows.get("1").watch
            assert fake.sio.wait_until(watch.wake.is_set)

    clock.real_wait = 0  # no event comes after the clear
    with pytest.raises(JobCanceledError, match="deleted"):
        gen.generate_image("x", on_progress=clear_the_queue)
    assert item_polls(fake, 1) == 1  # once, when the event said to look
    # No polling: only the moment given to the item's last events, which may be on their
    # way when a read finds it gone (it may have been pruned as it finished).
    assert clock.slept == [pytest.approx(0.2)]


def test_threads_share_one_socket_and_get_their_own_events(fake, runs_by_itself, make_generator):
    gen = make_generator(default_model="sdxl-base")
    seen: dict[int, list[Progress]] = {}
    names: dict[tuple[int, int], str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        seen[i] = []
        try:
            for j in range(2):
                names[i, j] = gen.generate_image(
                    f"{i}-{j}", steps=4 + i, on_progress=seen[i].append
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(set(names.values())) == 8
    assert fake.count("POST", f"{QUEUE}/enqueue_batch") == 8
    assert len(fake.sio.connections) == 1  # one socket for every thread
    # Its own items' steps only (an item runs as soon as it is enqueued: steps pushed before
    # its job watches it are not kept).
    every = [(p.step, p.total) for i in range(4) for p in seen[i] if p.stage == "step"]
    assert every
    for i in range(4):
        assert all(
            total == 4 + i for _, total in ((p.step, p.total) for p in seen[i] if p.stage == "step")
        )
    assert all(item_polls(fake, item_id) == 0 for item_id in fake.items)


# -- the socket missing, refused, lost ---------------------------------------------------


def test_refused_socket_means_polling_as_before(fake, make_generator, clock, caplog):
    fake.sio.refuse = True  # answered as the real server answered a bad handshake (403)
    gen = make_generator(default_model="sdxl-base")
    with caplog.at_level(logging.WARNING):
        name = gen.generate_image("x")
    assert image_of(gen, name) == fake.items[1].image_name
    assert fake.sio.refused >= 1
    assert gen._events.live is False
    assert item_polls(fake, 1) == 3  # pending, running, completed: polled on schedule
    assert "following queue items by polling" in caplog.text


def test_no_socketio_server_at_all_means_polling(fake, socketio_server, make_generator, clock):
    socketio_server.stop()  # connection refused
    gen = make_generator(default_model="sdxl-base")
    assert image_of(gen, gen.generate_image("x")) == fake.items[1].image_name
    assert gen._events.live is False
    assert gen._events.failures >= 1
    assert item_polls(fake, 1) == 3


def test_events_off_opens_no_socket(fake, make_generator, clock):
    gen = make_generator(default_model="sdxl-base", events=False)
    gen.generate_image("x")
    assert fake.sio.connections == []
    assert gen._events is None
    assert item_polls(fake, 1) == 3


def test_unacknowledged_subscription_means_polling(fake, make_generator, clock):
    fake.sio.ack_subscribe = False
    gen = make_generator(default_model="sdxl-base", timeout=0.2)
    assert image_of(gen, gen.generate_image("x")) == fake.items[1].image_name
    assert "timed out" in gen._events.last_error
    assert gen._events.live is False
    assert item_polls(fake, 1) == 3


def test_socket_lost_before_the_final_event_completes_once(
    fake, runs_by_itself, make_generator, clock
):
    fake.drop_instead_of = "completed"  # the final event is lost with the connection
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("x")
    assert image_of(gen, name) == fake.items[1].image_name
    assert fake.count("POST", f"{QUEUE}/enqueue_batch") == 1
    assert clock.slept == []  # the lost socket woke the waiter, which looked at once
    assert gen._events.drops == 1

    # It reconnects in the background; the next item is followed by events again.
    assert fake.sio.wait_until(lambda: gen._events.live and len(fake.sio.live) == 1)
    assert image_of(gen, gen.generate_image("y")) == fake.items[2].image_name
    assert item_polls(fake, 1) == 1  # the lost final event: read
    assert item_polls(fake, 2) == 0  # the events said it all
    assert clock.slept == []


def test_socket_lost_while_running_falls_back_to_fast_polling(fake, make_generator, clock):
    fake.script = ["pending", "in_progress", "in_progress", "completed"]
    clock.real_wait = 0  # the fake only moves on polls here: no event will come
    gen = make_generator(default_model="sdxl-base")

    def cut_the_socket(progress: Progress) -> None:
        if progress.stage == "running" and fake.sio.live:
            fake.sio.refuse = True
            fake.sio.drop()
            assert fake.sio.wait_until(lambda: not gen._events.live)

    polled: list[float] = []
    poll = gen.poll_job
    gen.poll_job = lambda ref: (polled.append(clock.now), poll(ref))[1]
    name = gen.generate_image("x", on_progress=cut_the_socket)
    assert image_of(gen, name) == fake.items[1].image_name
    assert fake.count("POST", f"{QUEUE}/enqueue_batch") == 1
    gaps = [b - a for a, b in itertools.pairwise(polled)]
    # A slow poll while the socket was live (an event would have said more), then the
    # lost socket made it look at once, and polling went on the core's schedule.
    assert gaps[0] >= 1.0
    assert all(gap <= 0.1 + 1e-9 for gap in gaps[2:])


def test_a_silent_server_is_given_up_and_reconnected(fake, make_generator):
    fake.sio.ping_interval = fake.sio.ping_timeout = 100  # ms; and the fake never pings
    gen = make_generator(default_model="sdxl-base")
    gen._start_events()
    assert fake.sio.wait_until(lambda: len(fake.sio.connections) >= 2, timeout=10)
    assert gen._events.drops >= 1


def test_the_client_speaks_as_the_recording_shows(fake, make_generator):
    gen = make_generator(default_model="sdxl-base")
    assert gen._start_events().live
    conn = fake.sio.connections[0]
    assert conn.received[0].startswith("40")  # the namespace "/" ("40{}": no auth data)
    assert conn.received[1].startswith("42")  # subscribe_queue, with an ack id
    assert json.loads(conn.received[1].lstrip("0123456789")) == [
        "subscribe_queue",
        {"queue_id": "default"},
    ]
    assert conn.subscribed == ["default"]
    fake.sio.ping()
    assert fake.sio.wait_until(lambda: conn.pongs == 1)
    assert conn.received[-1] == "3"


# -- the rest of the generator's promises, with a live socket ---------------------------


def test_timeout_cancels_the_item_with_a_live_socket(fake, make_generator, clock):
    fake.script = ["in_progress"]
    clock.real_wait = 0
    gen = make_generator(default_model="sdxl-base", max_wait=5)
    start = clock.now
    polled: list[float] = []
    poll = gen.poll_job
    gen.poll_job = lambda ref: (polled.append(clock.now), poll(ref))[1]
    with pytest.raises(GeneratorTimeoutError, match="not done after 5s"):
        gen.generate_image("x")
    assert clock.now - start == pytest.approx(5)
    # Read about every second after the enqueue (the event would say more): 1, 2, 3, 4 s.
    assert len(polled) == 4
    assert fake.items[1].status == "canceled"
    assert fake.count("PUT", f"{QUEUE}/i/1/cancel") == 1
    assert fake.count("POST", f"{QUEUE}/enqueue_batch") == 1


def test_close_stops_the_thread_and_a_later_call_reconnects(fake, runs_by_itself, make_generator):
    gen = make_generator(default_model="sdxl-base")
    gen.generate_image("x")
    events = gen._events
    thread = events._thread
    assert thread.is_alive()
    gen.close()
    assert not thread.is_alive()
    assert gen._events is None
    assert fake.sio.wait_until(lambda: not fake.sio.live)
    gen.generate_image("y")
    assert len(fake.sio.connections) == 2


def test_a_generator_dropped_without_close_stops_its_thread(fake, runs_by_itself):
    gen = InvokeAIGenerator({"base_url": fake.base_url, "default_model": "sdxl-base"})
    gen.generate_image("x")
    thread = gen._events._thread
    del gen
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
    assert fake.sio.wait_until(lambda: not fake.sio.live)


def test_token_is_sent_on_the_socket_and_never_logged(fake, runs_by_itself, make_generator, caplog):
    gen = make_generator(default_model="sdxl-base", token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        gen.generate_image("x")
        gen.close()
    assert fake.sio.connections[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in caplog.text


def test_the_socket_libraries_log_one_level_quieter_and_without_secrets(caplog):
    from degrees37_imagegen_invokeai._events import _SIO_LOG

    name = "degrees37_imagegen_invokeai._events.socketio"
    with caplog.at_level(logging.INFO, logger=name):
        _SIO_LOG.info("Received packet %s data %s", "MESSAGE", "2[...]")  # every packet
        _SIO_LOG.warning("Connection to %s refused", "http://u:pw@studio.example/ws")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "Connection to http://u:***@studio.example/ws refused")
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=name):
        _SIO_LOG.info("Connecting to %s", f"http://u:{TOKEN}@studio.example/ws")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "Connecting to http://u:***@studio.example/ws")
    ]


def test_our_socket_clients_decode_events_with_the_standard_json_scanner() -> None:
    """Events decoded without a Python call per integer, for our clients only: the
    library's own packet class (other users of socketio in the process) is left alone."""
    import engineio.json
    import socketio.packet

    from degrees37_imagegen_invokeai._sockets import PACKET, SocketClient

    raw = '2["invocation_complete",{"item_id":12,"result":{"image":{"image_name":"a.png"}}}]'
    packet = PACKET(encoded_packet=raw)
    assert packet.data == [
        "invocation_complete",
        {"item_id": 12, "result": {"image": {"image_name": "a.png"}}},
    ]
    assert SocketClient().packet_class is PACKET
    assert socketio.packet.Packet.json is engineio.json
