"""A fake ComfyUI for your tests: test templates and pipelines offline.

:class:`FakeComfyUI` is an in-process ComfyUI 0.3.64 on a loopback port, HTTP and WebSocket,
that answers as the real server answered in the recordings shipped with this package: it
validates a prompt against the real ``/object_info`` entries of the nodes it knows
(``EmptyImage``, ``SaveImage``, ``PreviewImage``, ``ImageBlur``, ``ImageScaleBy`` and a
fake ``CheckpointLoaderSimple`` → ``KSampler`` → ``VAEDecode`` chain), queues it, runs it
on a worker thread sending the WebSocket messages in the real order, and serves the images
from ``/view``::

    from degrees37_imagegen_comfyui import ComfyUIGenerator
    from degrees37_imagegen_comfyui.testing import EMPTY_IMAGE_TEMPLATE, running_fake

    with running_fake() as fake:
        config = {"server_address": fake.url, "workflow_template": EMPTY_IMAGE_TEMPLATE}
        with ComfyUIGenerator(config) as generator:
            generator.submit("a test", width=64, height=64).wait().save(path)

Fault switches (attributes, settable while it runs): ``faults`` (``post_500``,
``post_drop``, ``view_500``, ``view_drop``, ``view_truncated``: counts of requests to hit)
with ``fault_spacing``, ``refuse_websockets``, ``mute_websockets``, ``drop_after``,
``lose_next_post_answer``, ``scripted_posts``, ``history_delay``, :meth:`FakeComfyUI.gate`
(hold a node until you let it run) and :meth:`FakeComfyUI.restart`. What it received is in
``requests``, :meth:`FakeComfyUI.posts` and ``sent``.

Needs only the plugin's own dependencies (``websockets``, ``httpx``) and Pillow.
"""

from __future__ import annotations

from ._fake.common import (
    CAPTURES,
    EMPTY_IMAGE_TEMPLATE,
    TEXT_500,
    CaptureFolder,
    Item,
    NodeError,
    Recorded,
    load_capture,
)
from ._fake.server import FakeComfyUI, running_fake

__all__ = [
    "CAPTURES",
    "EMPTY_IMAGE_TEMPLATE",
    "TEXT_500",
    "CaptureFolder",
    "FakeComfyUI",
    "Item",
    "NodeError",
    "Recorded",
    "load_capture",
    "running_fake",
]
