"""The :class:`GeneratorContract`: what every generator owes the core, as tests.

A generator package subclasses it in its own tests and says how to make its generator::

    from typing import Any

    from degrees37_imagegen import BaseImageGenerator
    from degrees37_imagegen.testing import GeneratorContract

    from imagegen_echo.generator import EchoGenerator


    class TestEchoContract(GeneratorContract):
        secret_config = {"api_key": "sk-contract-secret"}

        def make_generator(self, **settings: Any) -> BaseImageGenerator:
            return EchoGenerator(settings, name="echo")

pytest then runs every ``test_*`` method below against that generator. Each failure says
what the contract expects and what the generator did. The module does not import pytest:
the checks are plain methods that raise :class:`AssertionError`, so they also run without it
(``TestEchoContract().test_save_is_whole(tmp_path)``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..base import MAX_SEED, BaseImageGenerator
from ..errors import (
    GeneratorError,
    InvalidRequestError,
    JobCanceledError,
    OutputError,
)
from ..files import read_png_text, verify_image
from ..job import ImageJob
from ..request import ImageRequest
from ._expect import (
    describe,
    expect,
    expect_core_error,
    fail,
    pixels,
    save_whole,
    skip,
)

__all__ = ["GeneratorContract", "expect"]


class GeneratorContract:
    """Base class of a generator's contract tests: subclass it, implement
    :meth:`make_generator`, and pytest checks what every generator owes the core.

    The checks: invalid sizes are refused with :class:`InvalidRequestError`; ``seed=-1`` is
    resolved to a concrete seed recorded in ``job.info.seed``; the same seed twice gives the
    same request (and, for a :attr:`deterministic` generator, the same image, while another
    seed gives another image); a job serialises to JSON and re-attaches on a fresh generator
    made from the same settings (``attach`` -> ``wait`` -> ``save``); ``cancel`` returns a
    bool and a canceled job gives no image; ``save`` is whole or nothing; errors are the
    core's types and name the generator; jobs may run from several threads at once; no
    secret setting shows in ``repr``, saved jobs or error messages.

    pytest makes a new instance of the class for every test, so state that two generators
    of one test must share (a fake server) can live on ``self``, or come from an autouse
    fixture defined in the subclass. To leave a check out, override its method with one
    that calls ``pytest.skip("why")``.
    """

    #: The size of the images the checks make (small, so that the suite stays fast).
    width: ClassVar[int] = 64
    height: ClassVar[int] = 48
    #: Sizes that every generator must refuse with :class:`InvalidRequestError`.
    invalid_sizes: ClassVar[tuple[tuple[Any, Any], ...]] = (
        (0, 64),
        (64, 0),
        (-64, 64),
        (64, 10**6),
        (64.5, 64),
    )
    #: Whether the same request gives the same pixels (a fake server, a seeded sampler).
    #: Set it to ``False`` for a backend that cannot promise that.
    deterministic: ClassVar[bool] = True
    #: Whether the generator uses seeds at all (``False``: ``job.info.seed`` may be ``None``).
    uses_seed: ClassVar[bool] = True
    #: Settings with secret values (``{"api_key": "sk-..."}``) given to :meth:`make_generator`
    #: for the secrets check; empty skips that check.
    secret_config: ClassVar[Mapping[str, Any]] = {}
    #: How many threads submit at once in the thread-safety check.
    threads: ClassVar[int] = 4
    #: How long a check waits for a job, in seconds of the generator's clock.
    wait_timeout: ClassVar[float | None] = 120.0
    #: The prompt the checks use.
    prompt: ClassVar[str] = "a lighthouse at dusk"

    # -- what a plugin author provides ----------------------------------------------------

    def make_generator(self, **settings: Any) -> BaseImageGenerator:
        """A new generator under test, with ``settings`` over your test settings.

        Called more than once per test: generators made here must reach the same (fake)
        server, so that a job saved by one can be re-attached by another.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_generator(self, **settings)"
        )

    def make_failing_generator(self, **settings: Any) -> BaseImageGenerator | None:
        """A generator whose jobs fail (a fake server's fault switch), or ``None`` to skip
        the checks of failed jobs."""
        return None

    def sent_request(self, job: ImageJob) -> object:
        """What the (fake) server received for ``job``, when it records it; ``None`` if not.

        Two jobs with the same seed must send equal requests: leave out what is unique per
        job (client ids...) before returning it. The job's idempotency key
        (``job.request.key``) may stay: the contract masks it.
        """
        return None

    # -- helpers --------------------------------------------------------------------------

    def run_job(self, gen: BaseImageGenerator, *, seed: int = 1234, prompt: str = "") -> ImageJob:
        """Submit one image of :attr:`width` x :attr:`height` and wait for it."""
        job = gen.submit(prompt or self.prompt, width=self.width, height=self.height, seed=seed)
        return job.wait(timeout=self.wait_timeout)

    def fetchpixels(self, job: ImageJob) -> tuple[str, tuple[int, int], bytes]:
        """The decoded pixels of a finished job's image (mode, size, raw bytes)."""
        data = job.fetch()
        try:
            return pixels(data)
        except Exception as exc:
            fail(f"fetch_image must give a whole, decodable image, got {len(data)} bytes ({exc})")

    # -- the checks -----------------------------------------------------------------------

    def test_connection_is_a_bool(self) -> None:
        """``test_connection()`` answers ``True`` or ``False``."""
        with self.make_generator() as gen:
            answer = gen.test_connection()
            expect(
                isinstance(answer, bool),
                f"test_connection() must return a bool, got {answer!r}",
            )

    def test_invalid_sizes_are_refused(self) -> None:
        """Every size in :attr:`invalid_sizes` raises :class:`InvalidRequestError`."""
        with self.make_generator() as gen:
            for width, height in self.invalid_sizes:
                try:
                    job = gen.submit(self.prompt, width=width, height=height, seed=1)
                except InvalidRequestError as exc:
                    expect(
                        exc.generator == gen.name,
                        f"the InvalidRequestError for {width!r}x{height!r} must name the "
                        f"generator {gen.name!r} (error.generator), got {exc.generator!r}",
                    )
                    continue
                except Exception as exc:
                    fail(
                        f"an invalid size {width!r}x{height!r} must raise InvalidRequestError, "
                        f"got {describe(exc)}"
                    )
                job.cancel()
                fail(
                    f"an invalid size {width!r}x{height!r} must raise InvalidRequestError "
                    f"before anything is sent, but submit() accepted it as job {job.id}"
                )

    def test_seed_minus_one_is_resolved_and_recorded(self) -> None:
        """``seed=-1`` becomes a concrete, random seed, recorded in ``job.info.seed``."""
        with self.make_generator() as gen:
            seeds = []
            for _ in range(2):
                job = self.run_job(gen, seed=-1)
                info = job.info
                expect(info is not None, "a finished job must have job.info, got None")
                assert info is not None
                if not self.uses_seed and info.seed is None:
                    return
                expect(
                    isinstance(info.seed, int) and 0 <= info.seed <= MAX_SEED,
                    "seed=-1 must be resolved to a concrete seed recorded in job.info.seed, "
                    f"got {info.seed!r}",
                )
                expect(
                    info.seed == job.request.seed,
                    f"job.info.seed must be the seed sent with the request ({job.request.seed}), "
                    f"got {info.seed!r}",
                )
                seeds.append(info.seed)
            expect(
                seeds[0] != seeds[1],
                f"seed=-1 must give a new random seed each time, got {seeds[0]} twice",
            )

    def test_same_seed_gives_same_request(self) -> None:
        """Two jobs with the same seed make the same request (and send the same to the server)."""
        with self.make_generator() as gen:
            first = self.run_job(gen, seed=1234)
            second = self.run_job(gen, seed=1234)
            expect(
                first.request == second.request,
                f"the same seed twice must give the same request, got {first.request!r} "
                f"and {second.request!r}",
            )
            assert first.info is not None
            assert second.info is not None
            if self.uses_seed:
                expect(
                    first.info.seed == second.info.seed == 1234,
                    "seed=1234 must be used as given and recorded in job.info.seed, got "
                    f"{first.info.seed!r} and {second.info.seed!r}",
                )
            sent = (
                _masked(self.sent_request(first), first.request.key),
                _masked(self.sent_request(second), second.request.key),
            )
            expect(
                sent[0] == sent[1],
                f"the same seed twice must send the same request to the server, got {sent[0]!r} "
                f"and {sent[1]!r}",
            )

    def test_same_seed_gives_same_image(self) -> None:
        """For a :attr:`deterministic` generator: the same seed gives the same pixels and
        another seed gives other pixels (the seed reaches the server)."""
        if not self.deterministic:
            skip("deterministic = False: the backend cannot give the same image twice")
        with self.make_generator() as gen:
            first = self.fetchpixels(self.run_job(gen, seed=1234))
            second = self.fetchpixels(self.run_job(gen, seed=1234))
            other = self.fetchpixels(self.run_job(gen, seed=4321))
        expect(
            first[1] == (self.width, self.height),
            f"a {self.width}x{self.height} request must give a {self.width}x{self.height} image, "
            f"got {first[1][0]}x{first[1][1]}",
        )
        expect(
            first == second,
            "the same request with seed=1234 must give the same image (the generator must pass "
            "the seed to the server, not draw its own); got different pixels. Set "
            "deterministic = False if the backend cannot give the same image twice",
        )
        expect(
            first != other,
            "seeds 1234 and 4321 must give different images (the seed must reach the server); "
            "got the same pixels",
        )

    def test_job_round_trips_through_json(self, tmp_path: Path) -> None:
        """``to_dict`` -> JSON -> ``attach`` on a fresh generator -> ``wait`` -> ``save``."""
        with self.make_generator() as gen:
            job = gen.submit(self.prompt, width=self.width, height=self.height, seed=77)
            try:
                text = json.dumps(job.to_dict())
            except GeneratorError as exc:
                fail(
                    "jobs must serialise with job.to_dict() so that another process can "
                    f"re-attach: it raised {describe(exc)} (implement the job steps "
                    "start_job, poll_job and fetch_image)"
                )
            except (TypeError, ValueError) as exc:
                fail(f"job.to_dict() must be JSON-safe (JobRef.data too), got {describe(exc)}")
            with self.make_generator() as fresh:
                again = fresh.attach(json.loads(text))
                expect(
                    again.id == job.id,
                    f"attach() must give the same job, got id {again.id!r} for {job.id!r}",
                )
                again.wait(timeout=self.wait_timeout)
                info = again.info
                expect(info is not None, "a re-attached job must have job.info once done")
                assert info is not None
                if self.uses_seed:
                    expect(
                        info.seed == 77,
                        f"a re-attached job must keep its seed (77) in job.info.seed, "
                        f"got {info.seed!r}",
                    )
                target = tmp_path / "attached.png"
                saved = save_whole(again, target)
                if self.deterministic:
                    job.wait(timeout=self.wait_timeout)
                    expect(
                        self.fetchpixels(again) == self.fetchpixels(job),
                        "a re-attached job must give the image of the job that was saved, "
                        "got other pixels",
                    )
        expect(saved == target, f"save({target}) must return the path written, got {saved}")

    def test_jobs_are_found_by_their_key(self) -> None:
        """A generator that implements ``find_job`` finds a submitted job by its request's
        key (the same job id), and nothing for a key it never saw; its saved form from
        ``on_sending`` attaches to the job once sent."""
        with self.make_generator() as gen:
            if type(gen).find_job is BaseImageGenerator.find_job:
                skip("the generator does not implement find_job (optional)")
            announced: list[dict[str, Any]] = []
            job = gen.submit(
                self.prompt,
                width=self.width,
                height=self.height,
                seed=5,
                on_sending=announced.append,
            )
            expect(
                len(announced) == 1 and announced[0]["id"] is None,
                f"submit(on_sending=...) must announce the job once, before it is sent, got "
                f"{announced!r}",
            )
            found = gen.find_job(job.request)
            expect(
                found is not None and found.id == job.id,
                f"find_job(job.request) must find job {job.id!r}, got {found!r} (send "
                "request.key with the work in start_job)",
            )
            other = ImageRequest(
                self.prompt, width=self.width, height=self.height, seed=5, key=str(uuid.uuid4())
            )
            missing = gen.find_job(other)
            expect(missing is None, f"find_job of a key never sent must be None, got {missing!r}")
            with self.make_generator() as fresh:
                again = fresh.attach(json.loads(json.dumps(announced[0])))
                expect(
                    again.id == job.id,
                    f"attach() of the announced job must find job {job.id!r}, got {again.id!r}",
                )
                again.wait(timeout=self.wait_timeout)

    def test_cancel_returns_a_bool_and_gives_no_image(self, tmp_path: Path) -> None:
        """``cancel()`` returns a bool; a canceled job raises on ``wait``/``save`` and the
        server agrees that it was canceled."""
        with self.make_generator() as gen:
            job = gen.submit(self.prompt, width=self.width, height=self.height, seed=5)
            acted = job.cancel()
            expect(isinstance(acted, bool), f"cancel() must return a bool, got {acted!r}")
            if not acted:  # finished already, or the backend cannot cancel: it must finish
                job.wait(timeout=self.wait_timeout)
                expect(
                    job.status == "done",
                    f"a job that cancel() left alone must finish, got {job.status!r}",
                )
                return
            expect(
                job.status == "canceled",
                f"after cancel() returned True the job must be 'canceled', got {job.status!r}",
            )
            seen = gen.poll_job(job.ref).status
            expect(
                seen != "done",
                "after cancel() returned True the server must not report the job done "
                "(cancel_job must really remove or interrupt it), got 'done'",
            )
            try:
                job.wait(timeout=self.wait_timeout)
            except JobCanceledError:
                pass
            else:
                fail("wait() on a canceled job must raise JobCanceledError, it returned")
            target = tmp_path / "canceled.png"
            try:
                job.save(target)
            except GeneratorError:
                pass
            else:
                fail("save() of a canceled job must raise a GeneratorError, it wrote an image")
            expect(not target.exists(), f"a canceled job must leave nothing at {target}")
            expect(
                job.cancel() is False,
                "cancel() of a job already canceled must return False",
            )

    def test_cancel_after_done_returns_false(self) -> None:
        """Canceling a finished job does nothing and returns ``False``."""
        with self.make_generator() as gen:
            job = self.run_job(gen)
            acted = job.cancel()
            expect(acted is False, f"cancel() of a finished job must return False, got {acted!r}")
            expect(job.status == "done", f"a finished job must stay 'done', got {job.status!r}")

    def test_save_is_whole(self, tmp_path: Path) -> None:
        """``save`` writes a whole image of the size in ``job.info``, with the request in
        its metadata, and leaves no temporary file."""
        with self.make_generator() as gen:
            job = self.run_job(gen, seed=99)
            folder = tmp_path / "out"
            target = folder / "image.png"
            save_whole(job, target)
            info = job.info
            assert info is not None
            _, size = verify_image(target)
            expect(
                size == (info.width, info.height),
                f"the saved image must be {info.width}x{info.height} (job.info), "
                f"got {size[0]}x{size[1]}",
            )
            left = sorted(p.name for p in folder.iterdir())
            expect(left == ["image.png"], f"save() must leave only the image, found {left}")
            text = read_png_text(target)
            if self.uses_seed:
                expect(
                    text.get("imagegen:seed") == str(info.seed),
                    "the saved PNG must carry the seed used in its metadata (imagegen:seed="
                    f"{info.seed}), got {text.get('imagegen:seed')!r}",
                )

    def test_save_to_unwritable_target_leaves_nothing(self, tmp_path: Path) -> None:
        """A target that cannot be written raises :class:`OutputError` and leaves nothing."""
        folder = tmp_path / "unwritable"  # tmp_path may hold the author's own fixtures
        folder.mkdir()
        with self.make_generator() as gen:
            job = self.run_job(gen)
            blocker = folder / "blocker"
            blocker.write_bytes(b"not a folder")
            for target in (blocker / "image.png", folder / "image.txt"):
                try:
                    job.save(target)
                except OutputError:
                    pass
                except Exception as exc:
                    fail(
                        f"save({target}) where nothing can be written must raise OutputError, "
                        f"got {describe(exc)}"
                    )
                else:
                    fail(f"save({target}) where nothing can be written must raise OutputError")
            left = sorted(p.name for p in folder.iterdir())
            expect(left == ["blocker"], f"a failed save() must leave nothing behind, found {left}")
            expect(
                blocker.read_bytes() == b"not a folder",
                "a failed save() must not touch files",
            )

    def test_errors_are_core_types_with_the_generator_name(self) -> None:
        """Errors are :class:`GeneratorError` subclasses (not a wrapped foreign exception)
        and name the generator."""
        with self.make_generator() as gen:
            checks: list[tuple[str, Callable[[], object]]] = [
                ("an invalid size", lambda: gen.submit(self.prompt, width=0, height=0)),
                ("an unknown image id", lambda: gen.download_image("no-such-image", "x.png")),
            ]
            for what, call in checks:
                expect_core_error(gen, what, call)
        failing = self.make_failing_generator()
        if failing is not None:
            with failing:
                expect_core_error(failing, "a job that fails", lambda: self.run_job(failing))

    def test_jobs_from_several_threads_at_once(self) -> None:
        """Several threads submit, wait and fetch at once on one generator."""
        with self.make_generator() as gen:
            count = self.threads
            barrier = threading.Barrier(count)
            results: dict[int, ImageJob] = {}
            errors: dict[int, BaseException] = {}

            def work(index: int) -> None:
                try:
                    barrier.wait(timeout=30)
                    job = self.run_job(gen, seed=100 + index, prompt=f"{self.prompt} {index}")
                    job.fetch()
                    results[index] = job
                except BaseException as exc:
                    errors[index] = exc

            workers = [threading.Thread(target=work, args=(i,)) for i in range(count)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=120)
            for index, exc in sorted(errors.items()):
                fail(
                    f"jobs submitted from {count} threads at once must all succeed; thread "
                    f"{index} raised {describe(exc)}"
                )
            ids = [job.id for job in results.values()]
            expect(
                len(set(ids)) == count,
                f"{count} jobs from {count} threads must have {count} different ids, got {ids}",
            )
            for index, job in results.items():
                expect(
                    job.request.seed == 100 + index
                    and (job.info is not None and (job.info.seed in (100 + index, None))),
                    f"the job of thread {index} must keep its own seed {100 + index}, got "
                    f"{job.info.seed if job.info else None!r}",
                )

    def test_no_secret_in_repr_or_errors(self, tmp_path: Path) -> None:
        """Secret settings never show in ``repr``, ``info()``, saved jobs or errors."""
        if not self.secret_config:
            skip("no secret_config given (settings with secret values to look for)")
        secrets = [str(v) for v in self.secret_config.values() if str(v)]
        shown: list[tuple[str, str]] = []
        with self.make_generator(**self.secret_config) as gen:
            shown += [
                ("repr(generator)", repr(gen)),
                ("str(generator)", str(gen)),
                ("generator.info()", json.dumps(gen.info(), default=str)),
            ]
            job = self.run_job(gen)
            shown += [("repr(job)", repr(job)), ("job.to_dict()", json.dumps(job.to_dict()))]
            for call in (
                lambda: gen.submit(self.prompt, width=0, height=0),
                lambda: job.save(tmp_path / "image.txt"),
                lambda: gen.download_image("no-such-image", tmp_path / "x.png"),
            ):
                try:
                    call()
                except Exception as exc:
                    shown.append((f"error {type(exc).__name__}", f"{exc} {exc!r}"))
        failing = self.make_failing_generator(**self.secret_config)
        if failing is not None:
            with failing:
                try:
                    self.run_job(failing)
                except Exception as exc:
                    shown.append((f"error {type(exc).__name__}", f"{exc} {exc!r}"))
        for where, text in shown:
            for secret in secrets:
                expect(
                    secret not in text,
                    f"a secret setting's value must never show, but {where} contains it: "
                    f"{text.replace(secret, '<SECRET>')}",
                )


def _masked(sent: object, key: str) -> object:
    """``sent`` with the idempotency ``key`` replaced by ``<key>`` wherever it appears."""
    if not key:
        return sent
    if isinstance(sent, str):
        return sent.replace(key, "<key>")
    if isinstance(sent, Mapping):
        return {_masked(k, key): _masked(v, key) for k, v in sent.items()}
    if isinstance(sent, (list, tuple)):
        return type(sent)(_masked(v, key) for v in sent)
    return sent
