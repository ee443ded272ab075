"""Native async steps delegated to a per-event-loop driver: :class:`AsyncDriverSteps`.

A plugin with a native async driver (an async HTTP client, one WebSocket per generator)
mixes this in before :class:`~degrees37_imagegen.BaseImageGenerator` and implements
:meth:`AsyncDriverSteps.make_async_driver`; the async steps (``astart_job``...) then go
to one driver per event loop, made on first use, and ``aclose`` closes it::

    class MyGenerator(AsyncDriverSteps, BaseImageGenerator):
        def make_async_driver(self) -> AsyncDriver:
            return MyAsyncDriver(self)  # holds the loop's clients and sockets
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .job import JobRef, JobUpdate
from .request import ImageRequest

if TYPE_CHECKING:  # asyncio is imported when a loop runs, not with every plugin (~20 ms)
    import asyncio

__all__ = ["AsyncDriver", "AsyncDriverSteps"]


class AsyncDriver(Protocol):
    """What a plugin's async driver offers: the steps, on the event loop it was made on."""

    loop: asyncio.AbstractEventLoop

    async def start(self, request: ImageRequest) -> JobRef:
        """``start_job``."""

    async def poll(self, ref: JobRef) -> JobUpdate:
        """``poll_job``."""

    async def wait(self, ref: JobRef, timeout: float) -> JobUpdate:
        """``wait_job``."""

    async def fetch(self, ref: JobRef, result: Mapping[str, Any]) -> bytes | AsyncIterator[bytes]:
        """``fetch_image``."""

    async def cancel(self, ref: JobRef) -> bool:
        """``cancel_job``."""

    async def aclose(self) -> None:
        """Close the driver's clients and sockets."""


class AsyncDriverSteps:
    """The async plugin steps, each handed to the driver of the running event loop.

    A driver whose waits end on a job's news from a socket says so with an
    ``events_live`` attribute (true while the socket is read): see
    :meth:`events_live_here`.
    """

    _adriver: AsyncDriver | None = None

    def events_live_here(self) -> bool:
        """Whether the caller runs on the loop of this generator's async driver and that
        driver's events are live: a wait for a job then ends as soon as the job changes
        (or the socket is lost), so ``poll_delay`` may let it last a poll interval instead
        of coming back every few milliseconds with nothing."""
        import sys

        driver = self._adriver
        if driver is None or not getattr(driver, "events_live", False):
            return False
        asyncio = sys.modules.get("asyncio")  # no loop ever ran: not on one now
        if asyncio is None:
            return False
        try:
            return asyncio.get_running_loop() is driver.loop
        except RuntimeError:  # a sync caller (another thread, no loop)
            return False

    def make_async_driver(self) -> AsyncDriver:
        """A new driver for the running event loop."""
        raise NotImplementedError(f"{type(self).__name__} does not make an async driver")

    def _aio(self) -> AsyncDriver:
        import asyncio

        driver = self._adriver
        if driver is None or driver.loop is not asyncio.get_running_loop():
            driver = self._adriver = self.make_async_driver()
        return driver

    async def astart_job(self, request: ImageRequest) -> JobRef:
        """``start_job``, natively async."""
        return await self._aio().start(request)

    async def apoll_job(self, ref: JobRef) -> JobUpdate:
        """``poll_job``, natively async."""
        return await self._aio().poll(ref)

    async def await_job(self, ref: JobRef, timeout: float) -> JobUpdate:
        """``wait_job``, natively async: news from the driver's one socket."""
        return await self._aio().wait(ref, timeout)

    async def afetch_image(
        self, ref: JobRef, result: Mapping[str, Any]
    ) -> bytes | AsyncIterator[bytes]:
        """``fetch_image``, natively async."""
        return await self._aio().fetch(ref, result)

    async def acancel_job(self, ref: JobRef) -> bool:
        """``cancel_job``, natively async."""
        return await self._aio().cancel(ref)

    async def aclose_driver(self) -> None:
        """Close the async driver if it belongs to this loop; the sync clients stay open
        (a loop that ends while the generator lives on: the batch's loop thread)."""
        import asyncio

        driver = self._adriver
        if driver is not None and driver.loop is asyncio.get_running_loop():
            self._adriver = None
            await driver.aclose()

    async def atest_connection(self) -> bool:
        """``test_connection``, natively async when the driver can ask (its own
        ``test_connection`` coroutine), else in a worker thread."""
        ask = getattr(self._aio(), "test_connection", None)
        if ask is not None:
            return bool(await ask())
        from typing import cast

        from ._async_api import AsyncAPI
        from .base import BaseImageGenerator

        return await AsyncAPI.atest_connection(cast(BaseImageGenerator, self))  # a thread

    async def aclose(self) -> None:
        """Close the async driver (if it belongs to this loop), then the sync clients."""
        import asyncio

        driver, self._adriver = self._adriver, None
        if driver is not None and driver.loop is asyncio.get_running_loop():
            await driver.aclose()
        close = getattr(self, "close", None)
        if close is not None:
            close()
