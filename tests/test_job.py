"""The job handle and the core's pipeline, with small generators written for the test."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import tracemalloc
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from degrees37_imagegen import (
    BaseImageGenerator,
    GeneratorError,
    GeneratorTimeoutError,
    ImageJob,
    ImageRequest,
    InvalidRequestError,
    JobCanceledError,
    JobFailedError,
    JobRef,
    JobUpdate,
    PluginError,
    Progress,
    read_png_text,
    verify_image,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


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


class StepGenerator(BaseImageGenerator):
    """A generator of the step contract, talking to a :class:`Server`."""

    server_setting = "url"
    default_settings = {"url": "fake://one", "api_key": "", "fail": "", "raise": ""}

    def __init__(self, server: Server, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, name="steps", clock=server.clock)
        self.backend = server

    def test_connection(self) -> bool:
        return True

    def start_job(self, request: ImageRequest) -> JobRef:
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
                "failed",
                error=JobFailedError("it broke", job_id=ref.id, error_type="OOM"),
            )
        job["state"] = "done"
        return JobUpdate("done", result={"name": ref.id}, model="m1", seed_used=ref.id != "j9")

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        assert result == {"name": ref.id}
        return png()

    def cancel_job(self, ref: JobRef) -> bool:
        job = self.backend.jobs[ref.id]
        if job["state"] in ("queued", "running"):
            job["state"] = "canceled"
            return True
        return False


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Server:
    return Server(clock)


def test_submit_returns_at_once_and_wait_follows_the_job(server: Server, tmp_path: Path) -> None:
    gen = StepGenerator(server)
    job = gen.submit("a fox", width=8, height=8, seed=-1)
    assert isinstance(job, ImageJob)
    assert (job.id, job.status) == ("j1", "queued")
    assert server.clock.now == 0  # submit waited for nothing
    assert job.wait() is job
    assert job.status == "done"
    assert job.info is not None
    assert job.info.seed == job.request.seed
    assert job.info.seed >= 0
    assert (job.info.model, job.info.server) == ("m1", "fake://one")
    path = job.save(tmp_path / "fox.png")
    assert read_png_text(path)["imagegen:seed"] == str(job.info.seed)


def test_to_dict_and_attach_in_a_new_generator(server: Server, tmp_path: Path) -> None:
    job = StepGenerator(server).submit("a fox", width=8, height=8, seed=7, steps=30)
    data = json.loads(json.dumps(job.to_dict()))
    assert data["ref"] == {"client": "me"}
    assert data["request"]["options"] == {"steps": 30}
    again = StepGenerator(server).attach(data)
    assert (again.id, again.request.seed, again.status) == ("j1", 7, "running")
    again.wait().save(tmp_path / "a.png")
    assert verify_image(tmp_path / "a.png") == ("PNG", (8, 8))


def test_attach_refuses_another_server_or_class(server: Server) -> None:
    data = StepGenerator(server).submit("x", width=8, height=8).to_dict()
    other = StepGenerator(server, {"url": "fake://two"})
    with pytest.raises(InvalidRequestError, match="runs on fake://one"):
        other.attach(data)
    with pytest.raises(InvalidRequestError, match="not a saved job"):
        other.attach({"id": "j1"})
    with pytest.raises(InvalidRequestError, match="was made by"):
        other.attach({**data, "class": "elsewhere:Other"})


def test_cancel_acts_once_and_only_on_unfinished_jobs(server: Server) -> None:
    gen = StepGenerator(server)
    job = gen.submit("x", width=8, height=8)
    assert job.cancel() is True
    assert job.status == "canceled"
    assert job.cancel() is False
    with pytest.raises(JobCanceledError):
        job.wait()
    done = gen.submit("y", width=8, height=8).wait()
    assert done.cancel() is False


def test_a_failed_job_raises_its_error_with_the_generator_name(server: Server) -> None:
    job = StepGenerator(server, {"fail": "yes"}).submit("x", width=8, height=8)
    with pytest.raises(JobFailedError, match="it broke") as info:
        job.wait()
    assert info.value.generator == "steps"
    assert info.value.work == "ran"
    assert (info.value.job_id, info.value.error_type) == ("j1", "OOM")
    assert job.status == "failed"


def test_a_plugins_own_exception_is_one_line(server: Server) -> None:
    gen = StepGenerator(server, {"raise": "start"})
    with pytest.raises(PluginError) as info:
        gen.submit("x", width=8, height=8)
    message = str(info.value)
    assert message.startswith("generator 'steps' (")
    assert message.endswith("failed: ValueError: unknown color specifier: 'notacolour'")
    assert "\n" not in message
    assert isinstance(info.value.__cause__, ValueError)


def test_wait_times_out_on_the_clock_and_generate_image_cancels(server: Server) -> None:
    gen = StepGenerator(server)
    job = gen.submit("x", width=8, height=8)
    with pytest.raises(GeneratorTimeoutError, match="not done after 1s"):
        job.wait(timeout=1.0)
    assert not job.done
    assert server.clock.now == pytest.approx(1.0)

    class Impatient(StepGenerator):
        def job_timeout(self) -> float | None:
            return 0.5

    with pytest.raises(GeneratorTimeoutError):
        Impatient(server).generate_image("y", width=8, height=8)
    assert server.jobs["j2"]["state"] == "canceled"  # nothing of ours left on the server


def test_a_progress_callback_that_raises_never_costs_the_image(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Progress] = []

    def broken(progress: Progress) -> None:
        calls.append(progress)
        raise RuntimeError("display is gone")

    gen = StepGenerator(server)
    with caplog.at_level(logging.WARNING):
        job = gen.submit("x", width=8, height=8, on_progress=broken)
        job.wait().save(tmp_path / "x.png")
    assert verify_image(tmp_path / "x.png")[0] == "PNG"
    assert len(calls) > 2  # it is still called
    failures = [r for r in caplog.records if "progress callback" in r.getMessage()]
    assert len(failures) == 1  # and logged once


def test_the_original_api_is_a_layer_over_jobs(server: Server, tmp_path: Path) -> None:
    gen = StepGenerator(server)
    image_id = gen.generate_image("x", width=8, height=8, seed=3)
    assert image_id == "j1"
    assert gen.download_image(image_id, tmp_path / "x.png") is True
    info = gen.image_info(image_id)
    assert info is not None
    assert info.seed == 3
    with pytest.raises(GeneratorError, match="unknown image id 'nope'"):
        gen.download_image("nope", tmp_path / "y.png")


def test_a_seedless_job_records_seed_not_used(server: Server, tmp_path: Path) -> None:
    gen = StepGenerator(server)
    for _ in range(8):
        gen.submit("x", width=8, height=8)
    job = gen.submit("x", width=8, height=8).wait()  # j9: the server used no seed
    assert job.info is not None
    assert job.info.seed is None
    assert read_png_text(job.save(tmp_path / "x.png"))["imagegen:seed"] == "not used"


def test_save_into_a_folder_and_with_the_umask(server: Server, tmp_path: Path) -> None:
    job = StepGenerator(server).submit("x", width=8, height=8).wait()
    old = os.umask(0o022)
    try:
        path = job.save(tmp_path)
    finally:
        os.umask(old)
    assert path == tmp_path / "j1.png"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


class TruncatingGenerator(StepGenerator):
    """Sends half an image the first ``cuts`` times it is asked."""

    cuts = 1

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        data = png((64, 64), "blue")
        if self.cuts:
            self.cuts -= 1
            return data[: len(data) // 2]
        return data


def test_a_truncated_download_is_fetched_again_not_generated_again(
    server: Server, tmp_path: Path
) -> None:
    gen = TruncatingGenerator(server)
    gen.submit("x", width=8, height=8).wait().save(tmp_path / "x.png")
    assert verify_image(tmp_path / "x.png") == ("PNG", (64, 64))
    assert len(server.jobs) == 1

    gen = TruncatingGenerator(server)
    gen.cuts = 10
    with pytest.raises(GeneratorError, match=r"x2\.png: the image received is not whole") as info:
        gen.submit("x", width=8, height=8).wait().save(tmp_path / "x2.png")
    assert ".part" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_saving_streams_without_holding_the_image(server: Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(
        buf, "PNG", compress_level=0
    )
    big = buf.getvalue()  # ~3 MB of noise

    class Streaming(StepGenerator):
        def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> Iterator[bytes]:
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

    job = Streaming(server).submit("x", width=8, height=8).wait()
    tracemalloc.start()
    try:
        job.save(tmp_path / "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(big) // 3, f"saving held {peak} bytes of a {len(big)}-byte image"
    assert verify_image(tmp_path / "big.png") == ("PNG", (1024, 1024))


class Legacy(BaseImageGenerator):
    """A generator of the original contract: generate_image and download_image only."""

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
        self.validate_dimensions(width, height)
        return "old-1"

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        Path(output_path).write_bytes(png())
        return True


def test_a_generator_of_the_original_contract_still_works(tmp_path: Path) -> None:
    gen = Legacy(name="old")
    job = gen.submit("x", width=8, height=8, seed=5)
    assert (job.id, job.status) == ("old-1", "done")
    assert job.cancel() is False  # it says it cannot, rather than pretending
    with pytest.raises(GeneratorError, match="cannot be saved or re-attached"):
        job.to_dict()
    path = job.save(tmp_path / "x.png")
    assert read_png_text(path)["imagegen:prompt"] == "x"
    assert gen.download_image(gen.generate_image("y", width=8, height=8) or "", tmp_path / "y.png")


def test_a_generator_must_implement_one_contract() -> None:
    class Nothing(BaseImageGenerator):
        def test_connection(self) -> bool:
            return True

    with pytest.raises(TypeError, match="implements neither"):
        Nothing()

    class Half(BaseImageGenerator):
        def test_connection(self) -> bool:
            return True

        def start_job(self, request: ImageRequest) -> JobRef:
            return JobRef("x")

    with pytest.raises(TypeError, match="not poll_job, fetch_image"):
        Half()


def test_poll_delay_is_capped_however_long_the_wait(server: Server) -> None:
    gen = StepGenerator(server)
    assert gen.poll_delay(0) == 0.0
    assert gen.poll_delay(5000) == gen.poll_interval  # no OverflowError after ~30 minutes


def test_generate_image_takes_a_timeout_per_call(server: Server) -> None:
    gen = StepGenerator(server)
    with pytest.raises(GeneratorTimeoutError, match=r"not done after 0\.5s"):
        gen.generate_image("x", width=8, height=8, timeout=0.5)
    assert server.jobs["j1"]["state"] == "canceled"


def test_retrying_unsent_repeats_only_what_never_reached_the_server(server: Server) -> None:
    from degrees37_imagegen import GeneratorConnectionError

    gen = StepGenerator(server)
    calls: list[str] = []

    def enqueue(work: str) -> str:
        calls.append(work)
        if len(calls) < 3:
            raise GeneratorConnectionError("refused", work=work)  # type: ignore[arg-type]
        return "queued"

    assert gen.retrying_unsent(enqueue, "not_sent") == "queued"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(GeneratorConnectionError) as info:
        gen.retrying_unsent(enqueue, "unknown")  # the answer was lost: never sent twice
    assert calls == ["unknown"]
    assert info.value.work == "unknown"


def test_a_secret_in_a_plugins_error_is_hidden(server: Server) -> None:
    class Leaky(StepGenerator):
        def start_job(self, request: ImageRequest) -> JobRef:
            raise GeneratorError("cannot connect to http://user:s3cret@host:9/api")

    with pytest.raises(GeneratorError) as info:
        Leaky(server).submit("x", width=8, height=8)
    assert "s3cret" not in str(info.value)
    assert "http://user:***@host:9/api" in str(info.value)


def test_a_password_in_the_server_url_is_in_no_saved_job_or_image(
    server: Server, tmp_path: Path
) -> None:
    url = "http://user:s3cret@host:9"
    job = StepGenerator(server, {"url": url}).submit("x", width=8, height=8, seed=1)
    data = json.loads(json.dumps(job.to_dict()))
    assert data["server"] == "http://user:***@host:9"
    again = StepGenerator(server, {"url": url}).attach(data)  # the same server still
    path = again.wait().save(tmp_path / "x.png")
    assert again.info is not None
    assert again.info.server == "http://user:***@host:9"
    assert "s3cret" not in json.dumps(read_png_text(path))
    old = {**data, "server": url}  # saved before passwords were hidden: still attaches
    assert StepGenerator(server, {"url": url}).attach(old).id == job.id
