"""The async half of :class:`~degrees37_imagegen.BaseImageGenerator`: a mixin.

The async API (``asubmit``, ``agenerate_image``, ``adownload_image``, ``aattach``,
``aclose``, ``async with``) and the optional async plugin steps (``astart_job``,
``apoll_job``, ``await_job``, ``afetch_image``, ``acancel_job``) live here so that the base
class stays a contract. The default async steps run the plugin's sync steps in a worker
thread (:func:`asyncio.to_thread`), so a plugin that implements only the sync steps works
under the async API; a plugin overrides them to be natively async. The pipeline itself is
in :mod:`degrees37_imagegen.aio`; nothing here imports :mod:`asyncio` until it is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from typing_extensions import Self

    from .aio import AsyncImageJob
    from .base import BaseImageGenerator
    from .job import JobRef, JobUpdate
    from .progress import ProgressCallback
    from .request import ImageRequest

__all__ = ["AsyncAPI"]


class AsyncAPI:
    """The async API and the default (worker-thread) async steps of every generator."""

    # -- the optional async steps a plugin may implement --------------------------------

    async def astart_job(self, request: ImageRequest) -> JobRef:
        """Async :meth:`start_job`. The default runs ``start_job`` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(_gen(self).start_job, request)

    async def apoll_job(self, ref: JobRef) -> JobUpdate:
        """Async :meth:`poll_job`. The default runs ``poll_job`` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(_gen(self).poll_job, ref)

    async def await_job(self, ref: JobRef, timeout: float) -> JobUpdate:
        """Async :meth:`wait_job`: wait up to ``timeout`` seconds for news of ``ref``.

        The default sleeps without a thread and polls when the plugin does not override
        ``wait_job``, and runs its ``wait_job`` in a worker thread when it does.
        """
        import asyncio

        from .aio import asleep
        from .base import BaseImageGenerator

        gen = _gen(self)
        if type(gen).wait_job is BaseImageGenerator.wait_job:
            await asleep(gen.clock, timeout)
            return await gen.apoll_job(ref)
        return await asyncio.to_thread(gen.wait_job, ref, timeout)

    async def afetch_image(
        self, ref: JobRef, result: Mapping[str, Any]
    ) -> bytes | AsyncIterator[bytes]:
        """Async :meth:`fetch_image`: the image's bytes, or an async iterator of chunks.

        The default runs ``fetch_image`` (and each chunk of a stream) in a worker thread.
        """
        import asyncio

        from .aio import chunks_in_thread

        data = await asyncio.to_thread(_gen(self).fetch_image, ref, result)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        return chunks_in_thread(data)

    async def acancel_job(self, ref: JobRef) -> bool:
        """Async :meth:`cancel_job`. The default runs ``cancel_job`` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(_gen(self).cancel_job, ref)

    # -- the async API -------------------------------------------------------------------

    async def asubmit(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        *,
        on_progress: ProgressCallback | None = None,
        on_sending: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> AsyncImageJob:
        """Async :meth:`submit`: an :class:`~degrees37_imagegen.AsyncImageJob` once the
        server has accepted the work."""
        from .aio import asubmit

        return await asubmit(
            _gen(self),
            prompt,
            negative_prompt,
            width,
            height,
            seed,
            on_progress,
            options,
            on_sending,
        )

    async def aattach(
        self, data: Mapping[str, Any], *, on_progress: ProgressCallback | None = None
    ) -> AsyncImageJob:
        """Async :meth:`attach`: the job that ``to_dict`` saved, followed again from here."""
        from .aio import aattach

        return await aattach(_gen(self), data, on_progress)

    async def agenerate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str:
        """Async :meth:`generate_image`: ``await asubmit(...)`` then ``await job.wait()``
        (canceled past :meth:`job_timeout`); returns the image id."""
        from .aio import await_or_cancel

        gen = _gen(self)
        job = await gen.asubmit(prompt, negative_prompt, width, height, seed, **kwargs)
        await await_or_cancel(job, gen.job_timeout())
        return job.id

    async def atest_connection(self) -> bool:
        """Async :meth:`test_connection`: whether the server answers. The default runs
        ``test_connection`` in a worker thread; plugins with native async steps ask with
        their async client."""
        import asyncio

        return bool(await asyncio.to_thread(_gen(self).test_connection))

    async def adownload_image(self, image_id: str, output_path: str | Path) -> bool:
        """Async :meth:`download_image`: write image ``image_id``, whole or not at all."""
        from .aio import ajob

        job = await ajob(_gen(self), image_id)
        await job.save(output_path)
        return True

    async def aclose(self) -> None:
        """Close async clients (plugins with native async steps extend this; a pool closes
        its members'), then :meth:`close`."""
        gen = _gen(self)
        for member in getattr(gen, "members", None) or ():
            await member.generator.aclose()
        gen.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _gen(mixin: AsyncAPI) -> BaseImageGenerator:
    return cast("BaseImageGenerator", mixin)
