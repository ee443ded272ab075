"""AsyncDriverSteps: whose waits may last a poll interval (events live on this loop)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from degrees37_imagegen.async_driver import AsyncDriverSteps


def test_events_are_live_here_only_on_the_drivers_loop_while_they_are_read() -> None:
    steps = AsyncDriverSteps()
    assert not steps.events_live_here()  # no driver yet

    async def on_the_loop() -> tuple[bool, bool, bool]:
        driver = SimpleNamespace(loop=asyncio.get_running_loop(), events_live=True)
        steps._adriver = driver  # type: ignore[assignment]
        live = steps.events_live_here()
        elsewhere = await asyncio.to_thread(steps.events_live_here)  # a sync caller
        driver.events_live = False
        return live, elsewhere, steps.events_live_here()

    assert asyncio.run(on_the_loop()) == (True, False, False)
    steps._adriver = SimpleNamespace(loop=None)  # type: ignore[assignment]
    assert not steps.events_live_here()  # a driver that says nothing of events


def test_a_driver_that_cannot_ask_tests_the_connection_in_a_worker_thread() -> None:
    import threading

    asked_in: list[str] = []

    class Steps(AsyncDriverSteps):
        def make_async_driver(self) -> SimpleNamespace:  # type: ignore[override]
            return SimpleNamespace(loop=asyncio.get_running_loop())  # no test_connection

        def test_connection(self) -> bool:
            asked_in.append(threading.current_thread().name)
            return True

    assert asyncio.run(Steps().atest_connection()) is True
    assert asked_in
    assert asked_in != [threading.main_thread().name]
