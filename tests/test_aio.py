"""The async API: the same behaviours as the sync handle, through the worker-thread adapter
(plugins with only sync steps), a plugin with native async steps, and the mock."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import zlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import degrees37_imagegen
from degrees37_imagegen import (
    AsyncImageJob,
    BaseImageGenerator,
    GeneratorError,
    GeneratorTimeoutError,
    ImageRequest,
    IncompleteImageError,
    InvalidRequestError,
    JobCanceledError,
    JobFailedError,
    JobRef,
    JobUpdate,
    PluginError,
    Progress,
    read_png_text,
    run_batch_async,
    verify_image,
)
from degrees37_imagegen.aio import awrite_image, is_native
from degrees37_imagegen.batch import parse_jobs_text
from degrees37_imagegen.testing import FakeClock


def png(size: tuple[int, int] = (8, 8), colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


class Server:
    """A pretend queue: jobs run for ``runtime`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, runtime: float = 3.0) -> None:
        self.clock = clock
        self.runtime = runtime
        self.jobs: dict[str, dict[str, Any]] = {}
        self.threads: set[str] = set()


class StepGenerator(BaseImageGenerator):
    """A generator of the sync step contract only: the core runs it in worker threads."""

    server_setting = "url"
    default_settings = {"url": "fake://one", "fail": "", "raise": ""}

    def __init__(self, server: Server, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, name="steps", clock=server.clock)
        self.backend = server

    def test_connection(self) -> bool:
        return True

    def start_job(self, request: ImageRequest) -> JobRef:
        self.backend.threads.add(threading.current_thread().name)
        if self.config["raise"] == "start":
            raise ValueError("unknown color specifier: 'notacolour'")
        job_id = f"j{len(self.backend.jobs) + 1}"
        self.backend.jobs[job_id] = {"started": self.clock.monotonic(), "state": "queued"}
        return JobRef(job_id, {"client": "me"})

    def poll_job(self, ref: JobRef) -> JobUpdate:
        job = self.backend.jobs[ref.id]
        if job["state"] == "canceled":
            return JobUpdate("canceled")
        if self.clock.monotonic() - job["started"] < self.backend.runtime:
            job["state"] = "running"
            return JobUpdate("running", progress=Progress("step", step=1, total=2))
        if self.config["fail"]:
            return JobUpdate(
                "failed", error=JobFailedError("it broke", job_id=ref.id, error_type="OOM")
            )
        job["state"] = "done"
        return JobUpdate("done", result={"name": ref.id}, model="m1")

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        return png()

    def cancel_job(self, ref: JobRef) -> bool:
        job = self.backend.jobs[ref.id]
        if job["state"] in ("queued", "running"):
            job["state"] = "canceled"
            return True
        return False


class NativeGenerator(StepGenerator):
    """The same, with native async steps (no worker thread) and a streamed download."""

    cuts = 0

    async def astart_job(self, request: ImageRequest) -> JobRef:
        return self.start_job(request)

    async def apoll_job(self, ref: JobRef) -> JobUpdate:
        return self.poll_job(ref)

    async def afetch_image(
        self, ref: JobRef, result: Mapping[str, Any]
    ) -> bytes | AsyncIterator[bytes]:
        data = png((64, 64), "blue")
        if self.cuts:
            self.cuts -= 1
            data = data[: len(data) // 2]

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 100):
                yield data[i : i + 100]

        return chunks()

    async def acancel_job(self, ref: JobRef) -> bool:
        return self.cancel_job(ref)


@pytest.fixture
def server() -> Server:
    return Server(FakeClock())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("cls", [StepGenerator, NativeGenerator])
def test_asubmit_wait_save(server: Server, tmp_path: Path, cls: type[StepGenerator]) -> None:
    async def main() -> None:
        async with cls(server) as gen:
            job = await gen.asubmit("a fox", width=8, height=8, seed=-1)
            assert isinstance(job, AsyncImageJob)
            assert (job.id, job.status) == ("j1", "queued")
            assert await job.wait() is job
            assert job.status == "done"
            assert job.info is not None
            assert job.info.seed == job.request.seed
            path = await job.save(tmp_path / "fox.png")
            assert read_png_text(path)["imagegen:seed"] == str(job.info.seed)
            assert read_png_text(path)["imagegen:model"] == "m1"

    run(main())
    assert is_native(NativeGenerator(server))
    assert not is_native(StepGenerator(server))


def test_sync_only_steps_run_in_worker_threads(server: Server) -> None:
    async def main() -> None:
        await StepGenerator(server).agenerate_image("x", width=8, height=8)

    run(main())
    assert threading.main_thread().name not in server.threads  # not on the event loop


@pytest.mark.parametrize("cls", [StepGenerator, NativeGenerator])
def test_to_dict_and_aattach(server: Server, tmp_path: Path, cls: type[StepGenerator]) -> None:
    async def main() -> None:
        job = await cls(server).asubmit("a fox", width=8, height=8, seed=7, steps=30)
        data = json.loads(json.dumps(job.to_dict()))
        again = await cls(server).aattach(data)
        assert (again.id, again.request.seed, again.status) == ("j1", 7, "running")
        await (await again.wait()).save(tmp_path / "a.png")
        with pytest.raises(InvalidRequestError, match="runs on fake://one"):
            await cls(server, {"url": "fake://two"}).aattach(data)
        with pytest.raises(InvalidRequestError, match="not a saved job"):
            await cls(server).aattach({"id": "j1"})

    run(main())
    assert verify_image(tmp_path / "a.png")[0] == "PNG"


@pytest.mark.parametrize("cls", [StepGenerator, NativeGenerator])
def test_cancel_and_errors(server: Server, cls: type[StepGenerator]) -> None:
    async def main() -> None:
        gen = cls(server)
        job = await gen.asubmit("x", width=8, height=8)
        assert await job.cancel() is True
        assert job.status == "canceled"
        assert await job.cancel() is False
        with pytest.raises(JobCanceledError):
            await job.wait()
        with pytest.raises(JobFailedError, match="it broke") as info:
            await (await cls(server, {"fail": "y"}).asubmit("x", width=8, height=8)).wait()
        assert info.value.generator == "steps"
        with pytest.raises(PluginError, match="ValueError: unknown color"):
            await cls(server, {"raise": "start"}).asubmit("x", width=8, height=8)
        with pytest.raises(InvalidRequestError):
            await gen.asubmit("x", width=0, height=8)

    run(main())


@pytest.mark.parametrize("cls", [StepGenerator, NativeGenerator])
def test_timeout_and_agenerate_image_cancels(server: Server, cls: type[StepGenerator]) -> None:
    class Impatient(cls):  # type: ignore[valid-type, misc]
        def job_timeout(self) -> float | None:
            return 0.5

    async def main() -> None:
        job = await cls(server).asubmit("x", width=8, height=8)
        with pytest.raises(GeneratorTimeoutError, match="not done after 1s"):
            await job.wait(timeout=1.0)
        assert not job.done
        with pytest.raises(GeneratorTimeoutError):
            await Impatient(server).agenerate_image("y", width=8, height=8)
        assert server.jobs["j2"]["state"] == "canceled"

    run(main())


def test_a_canceled_task_cancels_its_job_on_the_server(server: Server) -> None:
    server.runtime = 1e9

    async def main() -> None:
        task = asyncio.ensure_future(
            NativeGenerator(server).agenerate_image("x", width=8, height=8)
        )
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert server.jobs["j1"]["state"] == "canceled"


def test_agenerate_then_adownload(server: Server, tmp_path: Path) -> None:
    async def main() -> None:
        gen = NativeGenerator(server)
        image_id = await gen.agenerate_image("x", width=8, height=8, seed=3)
        assert await gen.adownload_image(image_id, tmp_path / "x.png") is True
        with pytest.raises(GeneratorError, match="unknown image id 'nope'"):
            await gen.adownload_image("nope", tmp_path / "y.png")

    run(main())
    assert verify_image(tmp_path / "x.png") == ("PNG", (64, 64))


def test_a_truncated_stream_is_fetched_again_then_fails_naming_the_file(
    server: Server, tmp_path: Path
) -> None:
    async def main() -> None:
        gen = NativeGenerator(server)
        gen.cuts = 1
        await (await gen.asubmit("x", width=8, height=8)).save(tmp_path / "x.png")
        gen.cuts = 10
        job = await gen.asubmit("x", width=8, height=8)
        with pytest.raises(GeneratorError, match=r"x2\.png: the PNG received is not whole") as e:
            await job.save(tmp_path / "x2.png")
        assert ".part" not in str(e.value)

    run(main())
    assert verify_image(tmp_path / "x.png") == ("PNG", (64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
    assert len(server.jobs) == 2  # fetched again, never generated again


def test_awrite_image_checks_crcs_and_converts(tmp_path: Path) -> None:
    data = bytearray(png((16, 16)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # one flipped bit inside IDAT: the CRC no longer matches

    async def main() -> None:
        with pytest.raises(IncompleteImageError):
            await awrite_image(tmp_path / "bad.png", bytes(data))
        assert await awrite_image(tmp_path / "ok.jpg", png(), text={"a": "b"}, fmt="JPEG") == (
            "JPEG",
            (8, 8),
        )
        found = await awrite_image(tmp_path / "t.png", png((5, 7)), text={"prompt": "p"})
        assert found == ("PNG", (5, 7))

    run(main())
    assert not (tmp_path / "bad.png").exists()
    assert verify_image(tmp_path / "ok.jpg")[0] == "JPEG"
    assert read_png_text(tmp_path / "t.png")["imagegen:prompt"] == "p"
    assert zlib.crc32(b"") == 0  # (zlib is what checks the stream)


def test_the_mock_works_under_the_async_api(tmp_path: Path) -> None:
    from degrees37_imagegen_mock import MockGenerator

    async def main() -> None:
        async with MockGenerator({"delay": 0}, name="mock") as gen:
            image_id = await gen.agenerate_image("a lighthouse", width=32, height=48, seed=5)
            await gen.adownload_image(image_id, tmp_path / "m.png")
            job = await gen.asubmit("again", width=16, height=16)
            await job.save(tmp_path / "n.png")
            slow = MockGenerator({"delay": 100}, name="slow", clock=FakeClock())
            pending = await slow.asubmit("slow", width=16, height=16)
            assert await pending.cancel() is True
            with pytest.raises(JobCanceledError):
                await pending.wait()

    run(main())
    assert verify_image(tmp_path / "m.png") == ("PNG", (32, 48))
    assert read_png_text(tmp_path / "m.png")["imagegen:seed"] == "5"


def test_legacy_generators_work_under_the_async_api(tmp_path: Path) -> None:
    class Legacy(BaseImageGenerator):
        def test_connection(self) -> bool:
            return True

        def generate_image(
            self,
            prompt: str,
            negative_prompt: str = "",
            width: int = 1080,
            height: int = 1920,
            seed: int = -1,
            **kwargs: Any,
        ) -> str | None:
            return "old-1"

        def download_image(self, image_id: str, output_path: str | Path) -> bool:
            Path(output_path).write_bytes(png())
            return True

    async def main() -> None:
        gen = Legacy(name="old")
        job = await gen.asubmit("x", width=8, height=8, seed=5)
        assert (job.id, job.status) == ("old-1", "done")
        assert await job.cancel() is False
        await job.save(tmp_path / "x.png")
        assert await gen.adownload_image(await gen.agenerate_image("y"), tmp_path / "y.png")

    run(main())
    assert read_png_text(tmp_path / "x.png")["imagegen:prompt"] == "x"


def test_run_batch_async_yields_results_as_they_finish(tmp_path: Path) -> None:
    from degrees37_imagegen_mock import MockGenerator

    jobs = parse_jobs_text(
        "\n".join(json.dumps({"prompt": f"p{i}", "width": 16, "height": 16}) for i in range(6)),
        "jsonl",
    )

    async def collect() -> list[str]:
        gen = MockGenerator({"delay": 0}, name="mock")
        return [r.status async for r in run_batch_async(jobs, gen, tmp_path / "out")]

    assert run(collect()) == ["done"] * 6
    assert run(collect()) == ["skipped"] * 6  # a rerun finishes what is missing: nothing
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    assert degrees37_imagegen.run_batch_async is run_batch_async
