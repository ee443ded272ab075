"""The async driver of :class:`~.generator.InvokeAIGenerator`: httpx's ``AsyncClient`` and
python-socketio's ``AsyncClient``, driven by the same rules as the sync driver.

What to send comes from ``_plan`` (and the generator's own look-ups, read once and kept),
what answers and events mean from ``_queue``, ``_messages`` and ``_http``, when to read an
item again from ``_schedule``: one copy of the rules, two drivers. One socket.io connection
per generator, subscribed to the queue before the first enqueue, hands each event to the
item it names; items are still read over HTTP when an event says one may have ended (unless
the events said it completed and named its image), now and then in case an event was lost,
and on the core's schedule when the socket is down.

The driver belongs to the event loop it was first used on; used from another loop (a new
``asyncio.run``) it starts afresh there.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from degrees37_imagegen._async_http import AsyncClient
from degrees37_imagegen._http11 import Http11Transport
from degrees37_imagegen.aio import aretrying, asleep, await_event
from degrees37_imagegen.errors import (
    GeneratorError,
    IncompleteImageError,
)
from degrees37_imagegen.job import TERMINAL, JobRef, JobStatus, JobUpdate
from degrees37_imagegen.request import ImageRequest
from degrees37_imagegen.tls import http_verify

from ._api import QUEUE, VERSION_PATH
from ._catalog import MODELS_READ
from ._events import socket_address
from ._http import check_response, json_body, transport_error
from ._messages import QUEUE_ID, completed_image, ended_status, event_update, read_event
from ._plan import (
    Lookups,
    enqueue_content,
    enqueue_failure_work,
    enqueued,
    is_ours,
    new_destination,
    plan_image,
    requested_size,
)
from ._queue import (
    TERMINAL_STATUSES,
    ItemFacts,
    checked_item,
    image_update,
    item_read_failure,
    item_update,
    told_update,
)
from ._resolution import as_size, fit_png, fit_target
from ._schedule import GONE_GRACE, PollState, reconnect_delay

if TYPE_CHECKING:
    from ._asocket import AsyncQueueSocket
    from .generator import InvokeAIGenerator

__all__ = ["AsyncInvokeAI"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
#: The headers of a request whose JSON body is already encoded (as httpx's ``json=``).
_JSON_BODY = {"Content-Type": "application/json"}
#: Items whose ``invocation_complete`` and status events are kept until they are followed.
_MAX_EARLY = 64
#: The events an item keeps (see :meth:`_Item.told`), also when they come before it is
#: followed.
_TOLD = frozenset({"invocation_complete", "queue_item_status_changed"})


@dataclass
class _Item:
    """What the driver knows about one queue item it follows."""

    steps: int | None
    poll: PollState = field(default_factory=PollState)
    news: deque[JobUpdate] = field(default_factory=deque)
    look: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)
    #: The job's output node and destination, to know its image when an event names it.
    output_node: str | None = None
    destination: str | None = None
    #: The image an ``invocation_complete`` event said the output node made.
    image: tuple[str, int | None, int | None] | None = None
    #: The final status a ``queue_item_status_changed`` event gave the item.
    ended: str | None = None
    #: The status last handed to the core (from an event or a read).
    status: JobStatus | None = None
    #: A read found the item gone and waits for the event that names its image.
    wants_image: bool = False

    def told(self, name: str, data: Mapping[str, Any]) -> None:
        """Take the image an ``invocation_complete`` event names, or the final status a
        ``queue_item_status_changed`` event gives, if they are ours."""
        if name == "invocation_complete":
            if self.output_node is not None:
                made = completed_image(data, self.output_node, self.destination)
                self.image = made or self.image
        else:
            self.ended = ended_status(name, data, self.destination) or self.ended


class AsyncInvokeAI:
    """One generator's async I/O: the HTTP client, the socket.io client, the items."""

    def __init__(self, gen: InvokeAIGenerator) -> None:
        self.gen = gen
        self.loop = asyncio.get_running_loop()
        self._client: httpx.AsyncClient | None = None
        self._items: dict[str, _Item] = {}
        #: ``invocation_complete`` and status events of items not followed yet (a fast item
        #: can end before its job's first wait), by item id, the oldest dropped first.
        self._early: OrderedDict[int, list[tuple[str, Mapping[str, Any]]]] = OrderedDict()
        self._lookups: Lookups | None = None
        #: The JSON of the built-in graphs enqueued (see ``_plan.enqueue_content``).
        self._graphs: dict[Hashable, str] = {}
        self._socket: AsyncQueueSocket | None = None
        self._live = False
        self._opening = asyncio.Lock()
        self._failures = 0
        self._next_attempt = 0.0

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` (made on first use)."""
        if self._client is None:
            token = self.gen.config["token"]
            context = http_verify(self.gen.base_url)  # no CA bundle read for plain http
            headers = {"Accept": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self._client = AsyncClient(
                base_url=self.gen.base_url,
                timeout=float(self.gen.config["timeout"]),
                headers=headers,
                transport=self.gen.transport or Http11Transport(ssl_context=context),
                verify=context,
            )
        return self._client

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> Any:
        """One request answered with JSON (see the sync ``InvokeAIAPI.call``); ``content``:
        a JSON body already encoded."""
        headers = _JSON_BODY if content is not None else None
        try:
            response = await self.client.request(
                method, path, params=params, json=json, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, method, self.gen.base_url + path) from exc
        check_response(response)
        return json_body(response)

    async def test_connection(self) -> bool:
        """``atest_connection``: whether InvokeAI answers its version (as the sync
        ``test_connection``)."""
        try:
            data = await self.call("GET", VERSION_PATH)
        except GeneratorError as exc:
            log.warning("InvokeAI at %s is not usable: %s", self.gen.shown_server, exc)
            return False
        return self.gen._heard_version(data)

    async def read(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """A GET, retried on connection, timeout and limit errors."""
        return await aretrying(self.gen, self._get, path, params)

    async def _get(self, path: str, params: Mapping[str, Any] | None) -> Any:
        return await self.call("GET", path, params=params)

    async def send(
        self, method: str, path: str, *, json: Any = None, content: bytes | None = None
    ) -> Any:
        """A request that changes something: repeated only while it never reached the server."""
        call = functools.partial(self.call, method, path, json=json, content=content)
        return await aretrying(self.gen, call, unsent_only=True)

    async def read_item(self, item_id: str) -> dict[str, Any] | None:
        """The queue item, or ``None`` when InvokeAI has none by that id (deleted)."""
        try:
            item = await self.read(f"{QUEUE}/i/{item_id}")
        except GeneratorError as exc:
            failure = item_read_failure(exc, item_id)
            if failure is None:
                return None
            raise failure from failure.__cause__
        return checked_item(item, item_id)

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        """The image's bytes, in chunks, as they arrive."""
        path = self.gen._api.image_path(name)
        url = self.gen.base_url + path
        try:
            async with self.client.stream("GET", path) as response:
                if response.status_code >= 400:
                    await response.aread()
                    check_response(response, self.gen.name)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("image/"):
                    raise GeneratorError(
                        f"GET {url} answered {content_type or 'no content type'}, not an image",
                        generator=self.gen.name,
                    )
                async for chunk in response.aiter_bytes(_CHUNK):
                    yield chunk
        except httpx.HTTPError as exc:
            raise transport_error(exc, "GET", url, self.gen.name) from exc

    # -- events ----------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the socket is connected and subscribed."""
        return self._live

    @property
    def events_live(self) -> bool:
        """Whether the socket is live: waits end on the items' events
        (``AsyncDriverSteps.events_live_here``)."""
        return self._live

    async def ensure_events(self) -> bool:
        """Connect and subscribe (once; again after a drop, backing off); whether live.

        Never raises: without events, items are followed by polling.
        """
        gen = self.gen
        if not gen.config["events"] or self._live:
            return self._live
        async with self._opening:
            now = gen.clock.monotonic()
            if self._live or now < self._next_attempt:
                return self._live
            try:
                await self._connect()
            except Exception as exc:  # any failure means: poll, and try again later
                self._failures += 1
                self._next_attempt = now + reconnect_delay(self._failures)
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "InvokeAI's socket.io events are unavailable (%s); following queue items "
                    "by polling",
                    type(exc).__name__,
                )
                await self._drop_socket()
                return False
            self._failures = 0
            return True

    async def _connect(self) -> None:
        from ._asocket import AsyncQueueSocket  # websockets: imported only when used

        gen = self.gen
        timeout = min(float(gen.config["timeout"]), 10.0)
        token = gen.config["token"]
        url, path = socket_address(gen.base_url)
        socket = AsyncQueueSocket(self._on_event, self._on_disconnect)
        self._socket = socket
        await socket.connect(
            url, path, {"Authorization": f"Bearer {token}"} if token else {}, timeout
        )
        await socket.call("subscribe_queue", {"queue_id": QUEUE_ID}, timeout=timeout)
        self._live = True

    async def _on_disconnect(self, *args: Any) -> None:
        self._live = False
        for item in self._items.values():
            item.look = True  # events may be lost from here on: read the items now
            item.event.set()

    async def _on_event(self, name: str, *args: Any) -> None:
        for news in read_event(str(name), args[0] if args else None):
            items = (
                list(self._items.values())
                if news.item_id is None
                else [self._items[k] for k in (str(news.item_id),) if k in self._items]
            )
            told = news.event is not None and news.event[0] in _TOLD
            if told and not items and news.item_id is not None:
                assert news.event is not None
                self._early.setdefault(news.item_id, []).append(news.event)
                while len(self._early) > _MAX_EARLY:
                    self._early.popitem(last=False)
            for item in items:
                # The waiter wakes only for what it acts on: a look, an update, or the
                # image a read of a gone item waits for.
                wake = news.look
                if news.look:
                    item.look = True
                if news.event is not None:
                    if told:
                        item.told(*news.event)
                    if news.event[0] != "invocation_complete":
                        update = event_update(
                            *news.event, steps=item.steps, generator=self.gen.name
                        )
                        if update is not None:
                            item.news.append(update)
                            wake = True
                    elif item.wants_image or item.ended is not None:
                        wake = True
                if wake:
                    item.event.set()

    async def _drop_socket(self) -> None:
        socket, self._socket = self._socket, None
        self._live = False
        if socket is not None:
            try:
                await socket.close()
            except Exception:  # a broken socket may fail to close; it is gone either way
                log.debug("closing the socket.io connection failed", exc_info=True)

    # -- the steps -------------------------------------------------------------------------

    def follow(self, ref: JobRef) -> _Item:
        """The item ``ref`` as followed here (made anew for one enqueued elsewhere)."""
        item = self._items.get(ref.id)
        if item is None:
            steps = ref.data.get("steps")
            destination = ref.data.get("destination")
            item = self._items[ref.id] = _Item(
                steps if isinstance(steps, int) else None,
                output_node=str(ref.data.get("output_node") or self.gen._output_node()),
                destination=None if destination is None else str(destination),
            )
            for name, data in self._early.pop(int(ref.id), []) if ref.id.isdigit() else []:
                item.told(name, data)
        return item

    async def _look_up(self, request: ImageRequest) -> Lookups:
        """What the request names on the server (preset, model, board...): the sync
        generator's look-ups, in a worker thread; kept when they depend on the settings
        alone (no per-call options, no style preset), so each is read once."""
        cfg = self.gen.config
        shared = not request.options and not cfg["style_preset"]
        if shared and self._lookups is not None:
            return self._lookups
        catalog = self.gen._catalog
        if self.gen._names_a_model() and not catalog.models_read:  # read by our client
            catalog.keep_models(await self.read(*MODELS_READ))
        found = await asyncio.to_thread(self.gen._look_up, request)
        if shared:
            self._lookups = found
        return found

    async def start(self, request: ImageRequest) -> JobRef:
        """``astart_job``: plan the graph, subscribe, enqueue; never enqueued twice."""
        gen = self.gen
        plan = plan_image(request, gen.config, gen._template, await self._look_up(request))
        destination = new_destination(request.width, request.height, request.key)
        live = await self.ensure_events()  # subscribed before enqueuing: no event is missed
        found = await self._enqueue(enqueue_content(plan, destination, self._graphs))
        ref = JobRef(str(found["item_id"]), gen._ref_data(found, destination, plan))
        self.follow(ref).poll.enqueued(gen.clock.monotonic(), events_live=live)
        return ref

    async def _enqueue(self, body: bytes) -> dict[str, Any]:
        try:
            answer = await self.send("POST", f"{QUEUE}/enqueue_batch", content=body)
        except GeneratorError as exc:
            exc.work = enqueue_failure_work(exc)  # "unknown": the core looks it up first
            raise
        return enqueued(answer)

    async def poll(self, ref: JobRef) -> JobUpdate:
        """``apoll_job``: read the queue item once (see the sync ``poll_job``)."""
        gen = self.gen
        found = await self.read_item(ref.id)
        destination = ref.data.get("destination")
        facts = ItemFacts.from_ref(ref.data, gen._output_node())
        followed = self.follow(ref) if found is None else None
        end = gen.clock.monotonic() + GONE_GRACE
        while followed is not None and followed.image is None and self._live:
            # Pruned just as it finished? Its last events may still be on their way. (The
            # flags the event wakes for stay set: clearing it loses no news.)
            left = end - gen.clock.monotonic()
            if left <= 0:
                break
            followed.event.clear()
            followed.wants_image = True
            try:
                await await_event(gen.clock, followed.event, left)
            finally:
                followed.wants_image = False
        if followed is not None and followed.image is not None:
            update = image_update(int(ref.id), followed.image, facts)
        elif found is None:
            update = JobUpdate("canceled", error=gen._deleted(ref.id))
        elif destination is not None and not is_ours(found, str(destination)):
            update = JobUpdate("canceled", error=gen._deleted(ref.id, "replaced by another"))
        else:
            update = item_update(found, facts, gen.name)
        item = self._items.get(ref.id)
        if item is not None:
            item.poll.polled(gen.clock.monotonic(), update.status)
            item.status = update.status
        if update.status in TERMINAL:
            self._items.pop(ref.id, None)
        return update

    async def wait(self, ref: JobRef, timeout: float) -> JobUpdate:
        """``await_job``: returns early when something the core acts on changed (a new
        status or progress, the end); the item is read when an event says it may have
        ended, or when a read is due. Progress is coalesced: one update per wait, the
        latest. Without news, the status last handed out (an event's or a read's)."""
        gen = self.gen
        clock = gen.clock
        item = self.follow(ref)
        live = self._live or await self.ensure_events()
        end = clock.monotonic() + timeout
        while True:
            left = end - clock.monotonic()
            # An item never read (attached, or enqueued while the socket was down) is read
            # at once: its events may be over.
            if left > 0 and not item.news and not item.look and item.poll.status is not None:
                if live:
                    await await_event(clock, item.event, left)
                else:
                    await asleep(clock, left)
            item.event.clear()
            latest = item.news.pop() if item.news else None
            item.news.clear()
            if item.ended is not None:
                facts = ItemFacts.from_ref(ref.data, gen._output_node())
                told = told_update(int(ref.id), item.ended, item.image, facts)
                if told is not None:  # the events said it all: no need to read the item
                    item.poll.polled(clock.monotonic(), told.status)
                    self._items.pop(ref.id, None)
                    return told
            now = clock.monotonic()
            due = item.poll.due(
                now, events_live=self._live, look=item.look, poll_interval=gen.poll_interval
            )
            if due:
                item.look = False
                return await self.poll(ref)
            if latest is not None and (latest.progress is not None or latest.status != item.status):
                item.status = latest.status
                return latest
            if now >= end or not live:
                return JobUpdate(item.status or item.poll.status or "queued")

    async def fetch(self, ref: JobRef, result: Mapping[str, Any]) -> bytes | AsyncIterator[bytes]:
        """``afetch_image``: the image streamed, or read whole and fitted to the requested
        size (an SDXL image generated at another size), as the sync driver does."""
        gen = self.gen
        name = str(result["image_name"])
        requested = as_size(ref.data.get("size")) or requested_size(ref.data.get("destination"))
        how, size = fit_target(
            requested, as_size(result.get("size")), bool(gen.config["keep_native_size"])
        )
        if how == "stream" or size is None:
            return self.stream(name)

        async def whole() -> bytes:
            return b"".join([chunk async for chunk in self.stream(name)])

        data = await aretrying(gen, whole)
        try:
            return fit_png(data, size[0], size[1])
        except (OSError, SyntaxError, ValueError) as exc:
            raise IncompleteImageError(
                f"image {name} of queue item {ref.id} is not a whole image ({exc})", work="ran"
            ) from exc

    async def cancel(self, ref: JobRef) -> bool:
        """``acancel_job``: cancel our queue item, only if it is ours and not over."""
        found = await self.read_item(ref.id)
        destination = ref.data.get("destination")
        ours = found is not None and is_ours(
            found, None if destination is None else str(destination)
        )
        if found is None or not ours:
            if found is not None:
                log.warning("queue item %s is not this job's: not canceling it", ref.id)
            return False
        if found.get("status") in TERMINAL_STATUSES:
            return False

        async def put() -> Any:
            return await self.call("PUT", f"{QUEUE}/i/{ref.id}/cancel")

        answer = await aretrying(self.gen, put)
        acted = isinstance(answer, dict) and answer.get("status") == "canceled"
        if acted:
            self._items.pop(ref.id, None)
        return acted

    async def aclose(self) -> None:
        """Close the socket.io connection and the HTTP client."""
        await self._drop_socket()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
