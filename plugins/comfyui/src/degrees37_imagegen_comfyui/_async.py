"""The async driver of :class:`~.generator.ComfyUIGenerator`: httpx's ``AsyncClient`` and
one asyncio WebSocket per generator, driven by the same rules as the sync driver.

What to send and what answers and messages mean come from ``_protocol``, ``_monitor`` and
``_errors`` (no I/O), and the workflow from the generator's own ``_prepare``: one copy of
the rules, two drivers. Unlike the sync driver (one client id and socket per job, so that
threads never share one), every prompt of a generator is submitted under the generator's
one client id and followed through its one socket: a reader task hands each message to the
prompt it names (messages without a ``prompt_id`` go to the prompt that is running). Polling
``/history`` and ``/queue`` stays the source of truth, when the socket is quiet or gone.

The driver belongs to the event loop it was first used on; used from another loop (a new
``asyncio.run``) it starts afresh there.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from degrees37_imagegen._async_http import AsyncClient
from degrees37_imagegen._http11 import Http11Transport
from degrees37_imagegen.aio import aretrying, asleep, await_event
from degrees37_imagegen.errors import GeneratorError, InvalidRequestError, ServerError
from degrees37_imagegen.job import TERMINAL, JobRef, JobStatus, JobUpdate
from degrees37_imagegen.redaction import RedactingLogger
from degrees37_imagegen.request import ImageRequest
from degrees37_imagegen.tls import http_verify, ssl_context_for

from ._api import PromptMaybeSubmitted
from ._monitor import PromptTracker, decode, entry_from_messages, told_entry
from ._protocol import (
    CANCEL_SETTLE,
    cancel_action,
    canceled_by_us,
    gone_update,
    history_entry,
    history_update,
    output_images,
    prompt_body,
    queue_state,
    queue_update,
    stats_ready,
)

if TYPE_CHECKING:
    from .generator import ComfyUIGenerator

__all__ = ["AsyncComfyUI"]

log = logging.getLogger("degrees37_imagegen_comfyui")

#: The longest wait between two attempts to reconnect the WebSocket (seconds).
_MAX_RECONNECT_WAIT = 5.0
_CHUNK = 1 << 16


@dataclass
class _Prompt:
    """What the driver knows about one prompt it follows."""

    prompt_id: str
    tracker: PromptTracker
    data: Mapping[str, Any]
    news: deque[JobUpdate] = field(default_factory=deque)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    status: JobStatus = "queued"
    position: int | None = None
    last_poll: float | None = None
    #: What ``executed`` messages said each output node made (its images).
    outputs: dict[str, Any] = field(default_factory=dict)


class AsyncComfyUI:
    """One generator's async I/O: the HTTP client, the socket and the prompts it follows."""

    def __init__(self, gen: ComfyUIGenerator) -> None:
        self.gen = gen
        self.api = gen._api  # its error mapping (no I/O) is shared with the sync driver
        self.client_id = uuid.uuid4().hex
        self.loop = asyncio.get_running_loop()
        self._client: httpx.AsyncClient | None = None
        self._socket: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._next_connect = 0.0
        self._connect_wait = 0.0
        self._prompts: dict[str, _Prompt] = {}
        self._current: str | None = None  # the prompt the socket last said is running
        template = gen.template
        self._class_types = {n: template.class_type(n) for n in template.nodes}

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` (made on first use)."""
        if self._client is None:
            gen = self.gen
            # No CA bundle read for plain http.
            context = http_verify(gen.http_url, bool(gen.config["verify_ssl"]))
            self._client = AsyncClient(
                base_url=gen.http_url,
                headers=gen._headers,
                timeout=httpx.Timeout(gen.request_timeout, connect=gen.connect_timeout),
                verify=context,
                follow_redirects=False,
                transport=gen.transport or Http11Transport(ssl_context=context),
            )
        return self._client

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; transport and HTTP failures become the generator's errors."""
        label = f"{method} {path}"
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self.api._transport_error(exc, label) from exc
        self.api._check(response, label)
        return response

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of ``prompt_id``, or ``None`` while it has none."""
        label = f"GET /history/{prompt_id}"
        response = await self.request("GET", f"/history/{prompt_id}")
        return history_entry(self.api._json(response, label), prompt_id)

    async def test_connection(self) -> bool:
        """``atest_connection``: whether ComfyUI answers ``/system_stats`` (as the sync
        ``test_connection``)."""
        try:
            response = await self.request("GET", "/system_stats")
            return stats_ready(self.api._json(response, "GET /system_stats"))
        except GeneratorError as exc:
            log.info("ComfyUI at %s is not ready: %s", self.api.shown_url, exc)
            return False

    async def queue(self) -> Any:
        """``GET /queue`` as sent."""
        return self.api._json(await self.request("GET", "/queue"), "GET /queue")

    async def delete_from_queue(self, prompt_id: str) -> None:
        """Remove ``prompt_id`` from the pending queue (a no-op once it runs)."""
        await self.request("POST", "/queue", json={"delete": [prompt_id]})

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id``; the server does it only if that prompt is running."""
        await self.request("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def post_prompt(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a prompt (see the sync ``ComfyUIAPI.post_prompt``)."""
        label = "POST /prompt"
        try:
            response = await self.client.post("/prompt", json=dict(body))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self.api._transport_error(exc, label, "not_sent") from exc
        except httpx.HTTPError as exc:
            raise PromptMaybeSubmitted(self.api._transport_error(exc, label)) from exc
        return self.api.prompt_answer(response)

    async def view(self, image: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """Stream one output image from ``/view``, chunk by chunk."""
        params = {
            "filename": str(image.get("filename", "")),
            "subfolder": str(image.get("subfolder", "")),
            "type": str(image.get("type", "output")),
        }
        label = f"GET /view?filename={params['filename']}"
        try:
            async with self.client.stream("GET", "/view", params=params) as response:
                if response.status_code == 404:
                    raise ServerError(
                        f"ComfyUI at {self.api.shown_url} has no file {params['filename']!r} "
                        f"(type {params['type']!r}, subfolder {params['subfolder']!r}); "
                        "was it deleted?",
                        status=404,
                        work="ran",
                    )
                if response.status_code >= 400:
                    await response.aread()
                self.api._check(response, label)
                async for chunk in response.aiter_bytes(_CHUNK):
                    yield chunk
        except httpx.HTTPError as exc:
            raise self.api._transport_error(exc, label) from exc

    # -- the socket ------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the socket is open and read."""
        return self._socket is not None and self._reader is not None and not self._reader.done()

    @property
    def events_live(self) -> bool:
        """Whether the socket is read: waits end on the prompts' messages
        (``AsyncDriverSteps.events_live_here``)."""
        return self.live

    async def ensure_socket(self) -> bool:
        """Open the socket (once per generator) unless it is open; ``False`` if it cannot be
        now (the prompts are then followed by polling)."""
        if self.gen.transport is not None:
            return False  # an injected transport carries HTTP only: poll
        if self.live:
            return True
        async with self._opening:
            if self.live:
                return True
            now = self.gen.clock.monotonic()
            if now < self._next_connect:
                return False
            try:
                self._socket = await self._connect()
            except Exception as exc:  # no socket is not fatal: polling is the source of truth
                self._connect_wait = min(max(0.25, self._connect_wait * 2), _MAX_RECONNECT_WAIT)
                self._next_connect = now + self._connect_wait
                log.debug(
                    "cannot open ComfyUI's WebSocket at %s (%s); polling instead",
                    self.api.shown_url,
                    type(exc).__name__,
                )
                return False
            self._connect_wait = 0.0
            self._reader = asyncio.ensure_future(self._read(self._socket))
            return True

    async def _connect(self) -> ClientConnection:
        gen = self.gen
        url = f"{gen.ws_url}?clientId={self.client_id}"
        headers = dict(gen._headers)
        return await connect(
            url,
            ssl=ssl_context_for(url, bool(gen.config["verify_ssl"])),
            additional_headers=headers or None,
            open_timeout=gen.connect_timeout,
            close_timeout=2,
            max_size=64 * 2**20,
            max_queue=None,  # read everything: ComfyUI's one sender must never block on us
            logger=RedactingLogger(logging.getLogger("websockets.client"), headers),
        )

    async def _read(self, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                message = decode(raw)
                if message is not None:
                    self._dispatch(message)
        except (WebSocketException, OSError) as exc:
            log.info(
                "WebSocket to %s lost (%s); polling until it is back",
                self.api.shown_url,
                type(exc).__name__,
            )
        finally:
            if self._socket is socket:
                self._socket = None
            for prompt in self._prompts.values():
                prompt.last_poll = None  # messages may have been lost: ask the server
                prompt.event.set()

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, Mapping):
            return
        kind = message.get("type")
        if kind == "status":
            targets = list(self._prompts.values())
        else:
            prompt_id = data.get("prompt_id")
            if prompt_id is None:
                key = self._current
            else:
                key = str(prompt_id)
                if kind in ("execution_start", "executing"):
                    self._current = key
            target = self._prompts.get(key) if key is not None else None
            if target is None:
                return
            if kind == "executed":
                node, output = data.get("node"), data.get("output")
                if node is not None and isinstance(output, Mapping):
                    target.outputs[str(node)] = output
            targets = [target]
        for prompt in targets:
            update = prompt.tracker.handle(message)
            if update is not None:
                prompt.news.append(update)
                prompt.event.set()

    # -- the steps -------------------------------------------------------------------------

    def follow(self, ref: JobRef) -> _Prompt:
        """The prompt ``ref`` as followed here (made anew for one submitted elsewhere)."""
        prompt = self._prompts.get(ref.id)
        if prompt is None:
            tracker = PromptTracker(ref.id, self._class_types, generator=self.gen.name)
            prompt = self._prompts[ref.id] = _Prompt(ref.id, tracker, ref.data)
        return prompt

    async def start(self, request: ImageRequest) -> JobRef:
        """``astart_job``: prepare the workflow, make sure the socket listens, queue it."""
        gen = self.gen
        prompt_id = request.key or str(uuid.uuid4())
        if _pure(gen, request):
            workflow, data = gen._prepare(request, self.client_id)
        else:  # uploads, LoRA names or the sampler list to read first: sync I/O, once
            workflow, data = await asyncio.to_thread(gen._prepare, request, self.client_id)
        listening = await self.ensure_socket()
        ref = JobRef(prompt_id, data)
        prompt = self.follow(ref)  # before submitting, so that no message is missed
        if listening:
            prompt.last_poll = gen.clock.monotonic()
        try:
            answer = await self._submit(workflow, prompt_id)
        except BaseException:
            self._prompts.pop(prompt_id, None)
            raise
        if answer.get("node_errors"):
            log.warning(
                "ComfyUI queued prompt %s but reported errors for some outputs: %s",
                prompt_id,
                answer["node_errors"],
            )
        return ref

    async def _submit(self, workflow: dict[str, Any], prompt_id: str) -> dict[str, Any]:
        try:
            return await self.post_prompt(prompt_body(workflow, self.client_id, prompt_id))
        except PromptMaybeSubmitted as exc:
            # Lost answer (work="unknown"): the core finds the prompt by its id (find_job).
            raise exc.cause from exc

    async def poll(self, ref: JobRef) -> JobUpdate:
        """``apoll_job``: ask ``/history`` and ``/queue`` once (see the sync ``Follower``)."""
        prompt = self.follow(ref)
        prompt.last_poll = self.gen.clock.monotonic()
        gen = self.gen
        try:
            entry = await aretrying(gen, self.history, ref.id)
            if entry is None:
                state = queue_state(await aretrying(gen, self.queue), ref.id)
                update = queue_update(state, gen.name)
                if update is not None:
                    if update.status == "queued" and state.position == prompt.position:
                        update = JobUpdate("queued")  # no news: no progress report
                    prompt.position = state.position
                    return self._seen(prompt, update)
                entry = await aretrying(gen, self.history, ref.id)
        except GeneratorError as exc:
            if not self.live:
                raise
            log.debug("polling ComfyUI failed (%s); the WebSocket still tells", exc)
            return JobUpdate(prompt.status)
        if entry is not None:
            return self._seen(prompt, history_update(entry, ref.id, prompt.data))
        told = told_entry(prompt.tracker, prompt.outputs)
        if told is not None:  # gone from /history (a restart) after the socket told it all
            return self._seen(prompt, history_update(told, ref.id, prompt.data))
        return self._seen(prompt, gone_update(ref.id, self.api.shown_url))

    async def wait(self, ref: JobRef, timeout: float) -> JobUpdate:
        """``await_job``: the socket's news of the prompt within ``timeout``, else a poll
        when one is due. Progress is coalesced: one update per wait, the latest."""
        prompt = self.follow(ref)
        clock = self.gen.clock
        if not self.live:
            if await self.ensure_socket():
                return await self.poll(ref)  # messages sent while we were away are lost: ask
            await asleep(clock, timeout)
            return await self.poll(ref)
        if not prompt.news and prompt.last_poll is not None:  # one never read: read it now
            await await_event(clock, prompt.event, timeout)
        prompt.event.clear()
        latest: JobUpdate | None = None
        while prompt.news:
            update = prompt.news.popleft()
            if update.status == "queued" and prompt.status == "running":
                continue
            if update.status == "done":
                return await self._finished(prompt)
            if update.status in TERMINAL:
                return self._seen(prompt, update)
            latest = update
        if latest is not None:
            return self._seen(prompt, latest)
        last = prompt.last_poll
        if last is None or clock.monotonic() - last >= self.gen._poll_every:
            return await self.poll(ref)
        return JobUpdate(prompt.status)

    async def _finished(self, prompt: _Prompt) -> JobUpdate:
        if prompt.outputs:  # the messages said what it made: no need to read /history
            told = entry_from_messages(prompt.prompt_id, prompt.outputs, prompt.tracker)
            return self._seen(prompt, history_update(told, prompt.prompt_id, prompt.data))
        entry = await aretrying(self.gen, self.history, prompt.prompt_id)
        if entry is not None:
            return self._seen(prompt, history_update(entry, prompt.prompt_id, prompt.data))
        prompt.tracker.reopen()  # execution_success comes before history is written
        prompt.last_poll = None
        return self._seen(prompt, JobUpdate("running"))

    def _seen(self, prompt: _Prompt, update: JobUpdate) -> JobUpdate:
        prompt.status = update.status
        if update.status in TERMINAL:
            self._prompts.pop(prompt.prompt_id, None)
        return update

    async def fetch(self, ref: JobRef, result: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """``afetch_image``: the prompt's image streamed from ``/view``."""
        images = result.get("images")
        if not isinstance(images, list) or not images:
            entry = await aretrying(self.gen, self.history, ref.id)
            if entry is None:
                raise GeneratorError(
                    f"ComfyUI at {self.api.shown_url} has no history for prompt {ref.id}"
                )
            images = output_images(entry)
        index = int(result.get("index", ref.data.get("output_index", 0)) or 0)
        if not -len(images) <= index < len(images):
            raise InvalidRequestError(
                f"prompt {ref.id} has {len(images)} images; there is no image {index}"
            )
        return self.view(images[index])

    async def cancel(self, ref: JobRef) -> bool:
        """``acancel_job``: delete the prompt if pending, interrupt it (by its id) if it
        runs; nobody else's prompt is touched."""
        gen = self.gen
        acted = False
        state = queue_state(await aretrying(gen, self.queue), ref.id)
        if cancel_action(state) == "delete":
            await aretrying(gen, self.delete_from_queue, ref.id)
            acted = True
            state = queue_state(await aretrying(gen, self.queue), ref.id)
        interrupted = cancel_action(state) == "interrupt"
        if interrupted:
            await aretrying(gen, self.interrupt, ref.id)
            acted = True
        if acted:  # as the sync driver: did it stop, or finish anyway?
            end = gen.clock.monotonic() + (CANCEL_SETTLE if interrupted else 0.0)
            while True:
                outcome = canceled_by_us(await aretrying(gen, self.history, ref.id))
                if outcome is not None:
                    acted = outcome
                    break
                if gen.clock.monotonic() >= end:
                    break
                await asleep(gen.clock, 0.05)
        if acted:
            self._prompts.pop(ref.id, None)
        return acted

    async def aclose(self) -> None:
        """Close the socket, its reader and the HTTP client."""
        socket, self._socket = self._socket, None
        reader, self._reader = self._reader, None
        if socket is not None:
            try:
                await socket.close()
            except Exception:  # it may be broken already
                log.debug("closing the WebSocket failed", exc_info=True)
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _pure(gen: ComfyUIGenerator, request: ImageRequest) -> bool:
    """Whether preparing ``request`` needs no I/O: no per-call options (images, LoRAs),
    no configured LoRAs, and the sampler names read already (or not needed)."""
    if request.options or getattr(gen, "_loras", None):
        return False
    template = gen.template
    return gen._choices is not None or not (template.has("sampler") or template.has("scheduler"))
