"""A fake ComfyUI for benchmarks: the ComfyUI plugin's test fake, timed.

The fake itself (HTTP, WebSocket messages, queue, history, ``/view``) is the one the ComfyUI
plugin's tests use, ``tests/plugins/comfyui/comfyui_fake.py``, built from the captures in
``shared/api/comfyui``. This makes each image take a fixed time in all (``SaveImage`` waits
for the rest), encodes one PNG per size instead of one per image (the fake runs in the
benchmark's own process: its CPU time would be taken from the client being measured),
records when each prompt started and finished running (``time.perf_counter``), by prompt
id, and turns Nagle's algorithm off on its sockets, as a real server's are.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

_FAKE_DIR = Path(__file__).resolve().parents[2] / "tests" / "plugins" / "comfyui"

#: EmptyImage into SaveImage; the seed is the colour, so that no two jobs are the same
#: prompt (ComfyUI serves an identical prompt from its cache without making an image).
WORKFLOW: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {
            "width": "{{width}}",
            "height": "{{height}}",
            "batch_size": 1,
            "color": "{{seed}}",
        },
    },
    "2": {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "bench"},
    },
}


def timed_fake_class(seconds_per_image: float) -> Any:
    """The plugin's ``FakeComfyUI`` with ``seconds_per_image`` per image, or ``None`` when
    that fake is not in this checkout."""
    if str(_FAKE_DIR) not in sys.path:
        sys.path.insert(0, str(_FAKE_DIR))
    try:
        import comfyui_fake
        from comfyui_fake import FakeComfyUI
    except ImportError:
        return None
    # The fake writes headers and body separately; with Nagle's algorithm the body waits
    # for the client's delayed ACK (40 ms a request), which the real server does not do.
    comfyui_fake._Handler.disable_nagle_algorithm = True

    pngs: dict[tuple[int, int], bytes] = {}

    class TimedFakeComfyUI(FakeComfyUI):  # type: ignore[misc, valid-type]
        def __post_init__(self) -> None:
            super().__post_init__()
            self.times: dict[str, tuple[float, float]] = {}
            #: By prompt id: the seed (the colour) it was made with: which job's it is.
            self.seeds: dict[str, Any] = {}
            self._started = 0.0

        def _execute(self, item: Any) -> Any:
            self._started = time.perf_counter()  # one worker thread: one prompt at a time
            result = super()._execute(item)
            self.times[item.prompt_id] = (self._started, time.perf_counter())
            self.seeds[item.prompt_id] = item.prompt["1"]["inputs"]["color"]
            return result

        def _save(self, images: list[Any], prefix: str, kind: str) -> dict[str, Any]:
            saved = []
            for image in images:
                with self.lock:
                    count = self.counters.get(prefix, 0) + 1
                    self.counters[prefix] = count
                    name = f"{prefix}_{count:05}_.png"
                    if image.size not in pngs:
                        buffer = io.BytesIO()
                        image.save(buffer, format="PNG")
                        pngs[image.size] = buffer.getvalue()
                    self.files[(kind, "", name)] = pngs[image.size]
                saved.append({"filename": name, "subfolder": "", "type": kind})
            return {"images": saved}

        def _run(self, class_type: str, inputs: dict[str, Any], *args: Any) -> Any:
            result = super()._run(class_type, inputs, *args)
            if class_type == "SaveImage":  # the image takes T in all, its PNG encoding too
                time.sleep(max(0.0, seconds_per_image - (time.perf_counter() - self._started)))
            return result

    return TimedFakeComfyUI
