"""A fake InvokeAI for your tests: test graph templates and pipelines offline.

:class:`FakeInvokeAI` answers as a real InvokeAI 6.14.2 answered in the recordings shipped
with this package: boards, models, style presets, uploads, the queue and its items, and the
images. Every enqueued batch is checked against the real server's ``openapi.json`` (a graph
the server would refuse fails the test at once, with the schema's complaints), and a graph
that names a model the fake does not have fails at run time with the server's own error.
Its HTTP is an httpx mock (respx): give a generator ``transport=fake.transport``, or enter
``fake.router`` (``with fake.router:``) to route every httpx request to it, which is what
:func:`running_fake` does::

    from degrees37_imagegen_invokeai import InvokeAIGenerator
    from degrees37_imagegen_invokeai.testing import BLANK_TEMPLATE, running_fake

    with running_fake() as fake:
        config = {"base_url": fake.base_url, "graph_template": BLANK_TEMPLATE, "events": False}
        with InvokeAIGenerator(config) as generator:
            generator.submit("a test", width=64, height=64).wait().save(path)

With ``running_fake(events=True)`` a socket.io endpoint (:class:`SocketIOServer`) on a
loopback port pushes the queue events a real server pushes, and items run by themselves.

Fault switches: :meth:`FakeInvokeAI.add_fault` (``"connect"``, ``"lost"``, ``"dropped"``
for the next enqueue, poll, download...; ``"truncated"`` for a download), ``script`` (the
statuses an item shows on its polls), ``reject_next_enqueue`` (a capture name),
``complete_on_cancel``, ``run_after_polls``, ``drop_instead_of``, and on the socket.io
endpoint ``refuse``, ``ack_subscribe``, :meth:`SocketIOEndpoint.drop`. What it received is
in ``calls``, ``enqueued``, ``images`` and :func:`uploads_of`.

Counted faults, as in the ComfyUI fake: ``faults`` maps a kind of :data:`FAULTS`
(``enqueue_500``, ``enqueue_drop``, ``enqueue_lost``, ``image_500``, ``image_drop``,
``image_truncated``, ``prune_after_finish``) to how many requests it still hits, one in
``fault_spacing`` of its kind. :class:`ServedInvokeAI` is the fake on a loopback port (real
HTTP and socket.io, for another process such as the CLI), running its queue one item at a
time as the server does, with :meth:`ServedInvokeAI.restart`.

Needs the ``testing`` extra: ``pip install "degrees37-imagegen-invokeai[testing]"`` (respx,
imported only when a fake is made, and websockets for the socket.io endpoint).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from ._fake.captures import CAPTURES, CaptureFolder, Captures, schema_of
from ._fake.faults import FAULTS, REQUEST_FAULTS
from ._fake.items import FakeItem, model_record
from ._fake.schema import OpenAPISchema
from ._fake.served import ServedInvokeAI
from ._fake.server import BASE_URL, QUEUE, FakeInvokeAI
from ._fake.socketio import (
    WS_PATH,
    ItemIds,
    Recording,
    SocketIOEndpoint,
    SocketIOServer,
    invocation_event,
    recording,
    status_changed,
)
from ._fake.uploads import uploads_of

__all__ = [
    "BASE_URL",
    "BLANK_TEMPLATE",
    "CAPTURES",
    "QUEUE",
    "WS_PATH",
    "CaptureFolder",
    "Captures",
    "FAULTS",
    "REQUEST_FAULTS",
    "FakeInvokeAI",
    "FakeItem",
    "ItemIds",
    "OpenAPISchema",
    "Recording",
    "SocketIOEndpoint",
    "ServedInvokeAI",
    "SocketIOServer",
    "invocation_event",
    "model_record",
    "recording",
    "running_fake",
    "schema_of",
    "status_changed",
    "uploads_of",
]

#: A model-free graph template: one ``blank_image`` of the requested size (a copy is safe
#: to change: the generator reads it, never writes it).
BLANK_TEMPLATE: dict[str, Any] = {
    "id": "blank-graph",
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


@contextlib.contextmanager
def running_fake(*, events: bool = False, **settings: Any) -> Iterator[FakeInvokeAI]:
    """A fake InvokeAI whose routes take every httpx request to its ``base_url``.

    ``events=True`` also serves socket.io on a loopback port (the fake's ``base_url`` is
    then that port's address) and lets items run by themselves once enqueued, as the real
    server runs them. ``settings`` set the fake's attributes (``script``, ``run_after_polls``...).
    """
    server = SocketIOServer().start() if events else None
    try:
        fake = FakeInvokeAI(base_url=server.url if server else BASE_URL)
        if server is not None:
            fake.attach_socketio(server.endpoint)
            fake.run_after_polls = 0
            fake.script = ["pending"]
        for key, value in settings.items():
            if not hasattr(fake, key):
                raise AttributeError(f"FakeInvokeAI has no setting {key!r}")
            setattr(fake, key, copy.deepcopy(value))
        with fake.router:
            yield fake
        fake.wait_for_runners()
    finally:
        if server is not None:
            server.stop()
