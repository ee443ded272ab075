"""A fake queue-based server and its generator: one image at a time, like InvokeAI/ComfyUI."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from degrees37_imagegen import (
    BaseImageGenerator,
    GeneratorConnectionError,
    GeneratorError,
    ImageInfo,
    Progress,
    write_image_atomically,
)
from degrees37_imagegen.batch import GeneratorPool
from degrees37_imagegen.testing import FakeClock


class FakeServer:
    """One server: a lock makes it run one image at a time; it can die or refuse prompts.

    ``die_after``: once it has made that many images it stops answering new and queued
    requests (``downloads_too``: and downloads of what it made).
    """

    def __init__(self, url: str, delay: float = 0.0) -> None:
        self.url = url
        self.delay = delay
        self.lock = threading.Lock()
        self.state = threading.Lock()
        self.made: list[str] = []
        self.downloaded: list[str] = []
        self.waiting = 0
        self.max_waiting = 0
        self.dead = False
        self.die_after: int | None = None
        self.downloads_too = False
        self.kwargs: list[dict[str, Any]] = []

    def check_alive(self) -> None:
        if self.dead:
            raise GeneratorConnectionError(f"{self.url}: connection refused")


class FakeGenerator(BaseImageGenerator):
    """Talks to a :class:`FakeServer` named by ``url``. Prompts containing ``FAIL`` fail,
    ``CRASH`` raises a RuntimeError (a plugin bug), ``HALF`` writes half a file and fails."""

    default_settings: ClassVar[dict[str, Any]] = {"url": "fake://one", "delay": 0.0, "token": ""}
    server_setting: ClassVar[str] = "url"
    servers: ClassVar[dict[str, FakeServer]] = {}

    @property
    def server(self) -> FakeServer:
        url = self.config["url"]
        if url not in self.servers:
            self.servers[url] = FakeServer(url, float(self.config["delay"]))
        return self.servers[url]

    def test_connection(self) -> bool:
        return not self.server.dead

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        on_progress = kwargs.pop("on_progress", None)
        srv = self.server
        srv.check_alive()
        seed = self.resolve_seed(seed)
        self.report(on_progress, Progress("queued", generator=self.name))
        with srv.state:
            srv.waiting += 1
            srv.max_waiting = max(srv.max_waiting, srv.waiting)
        try:
            with srv.lock:  # the server makes one image at a time
                srv.check_alive()
                self.report(on_progress, Progress("running", generator=self.name))
                if srv.delay:
                    time.sleep(srv.delay)
                if "FAIL" in prompt:
                    raise GeneratorError(f"{srv.url}: the server refused {prompt!r}")
                if "CRASH" in prompt:
                    raise RuntimeError("a bug in the plugin")
                with srv.state:
                    srv.made.append(prompt)
                    srv.kwargs.append(dict(kwargs))
                    if srv.die_after is not None and len(srv.made) >= srv.die_after:
                        srv.dead = True
        finally:
            with srv.state:
                srv.waiting -= 1
        image_id = f"img-{uuid.uuid4().hex[:8]}"
        self.record_image(
            ImageInfo(
                image_id=image_id,
                generator=self.name,
                prompt=prompt,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                seed=seed,
                model="fake-model",
            )
        )
        return image_id

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        srv = self.server
        if srv.dead and srv.downloads_too:
            raise GeneratorConnectionError(f"{srv.url}: connection reset")
        info = self.image_info(image_id)
        assert info is not None
        buffer = io.BytesIO()
        meta = PngInfo()
        meta.add_text("server_meta", f"made by {srv.url}")
        Image.new("RGB", (info.width, info.height), (40, 80, 120)).save(buffer, "PNG", pnginfo=meta)
        data = buffer.getvalue()
        if "HALF" in info.prompt:
            Path(output_path).write_bytes(data[: len(data) // 2])
            raise GeneratorConnectionError("connection dropped during the download")
        write_image_atomically(output_path, data)
        with srv.state:
            srv.downloaded.append(info.prompt)
        return True


@pytest.fixture
def fake_servers() -> Iterator[dict[str, FakeServer]]:
    """The fake servers of this test, by URL."""
    FakeGenerator.servers = {}
    yield FakeGenerator.servers
    FakeGenerator.servers = {}


@pytest.fixture
def fake_cls(fake_servers: dict[str, FakeServer]) -> type[FakeGenerator]:
    """The fake generator class (for registries)."""
    return FakeGenerator


@pytest.fixture
def make_fake(fake_servers: dict[str, FakeServer]) -> Callable[..., FakeGenerator]:
    """``make_fake(url="fake://one", delay=0.0, name="fake")``."""

    def make(url: str = "fake://one", delay: float = 0.0, name: str = "fake") -> FakeGenerator:
        # A fake clock: retries and backoff take no real time.
        return FakeGenerator({"url": url, "delay": delay}, name=name, clock=FakeClock())

    return make


@pytest.fixture
def make_pool(fake_servers: dict[str, FakeServer]) -> Callable[..., GeneratorPool]:
    """``make_pool(n, delay=0.0)``: a pool of ``n`` fake servers ``fake://s1``..."""

    def make(n: int, delay: float = 0.0) -> GeneratorPool:
        urls = [f"fake://s{i}" for i in range(1, n + 1)]
        return GeneratorPool.from_settings(
            FakeGenerator, {"servers": urls, "delay": delay}, name="gpus"
        )

    return make


@pytest.fixture(params=["threads", "async"], autouse=True)
def batch_driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every batch test runs with both drivers: a thread per job, and one event loop
    (``BatchRunner(driver=...)``'s default, here)."""
    from degrees37_imagegen.batch import BatchRunner

    defaults = dict(BatchRunner.__init__.__kwdefaults__ or {})
    monkeypatch.setattr(
        BatchRunner.__init__, "__kwdefaults__", {**defaults, "driver": request.param}
    )
    return str(request.param)
