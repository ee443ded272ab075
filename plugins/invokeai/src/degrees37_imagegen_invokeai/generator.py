"""The InvokeAI generator: text-to-image through InvokeAI 6's queue API.

One image is one queue item. This module drives the steps the core calls: it looks up what
a request names, sends what :mod:`._plan` decided, reads answers with :mod:`._queue`,
follows events with :mod:`._events`/:mod:`._messages` and polls on :mod:`._schedule`'s
terms. Nothing is ever enqueued twice for one request: the enqueue is repeated only when it
never reached the server, and an enqueue whose answer was lost is found again by its
destination.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from degrees37_imagegen._lazy import lazy_module
from degrees37_imagegen.async_driver import AsyncDriverSteps
from degrees37_imagegen.base import BaseImageGenerator
from degrees37_imagegen.clock import Clock
from degrees37_imagegen.errors import (
    ConfigError,
    GeneratorError,
    IncompleteImageError,
    InvalidRequestError,
    JobCanceledError,
)
from degrees37_imagegen.images import UploadCache, parse_loras
from degrees37_imagegen.job import ImageData, ImageJob, JobRef, JobUpdate
from degrees37_imagegen.request import ImageRequest

from ._api import QUEUE, VERSION_PATH, InvokeAIAPI
from ._catalog import Catalog
from ._events import QueueEvents
from ._follow import Follow, Follows, wait_for_news
from ._graphs import OUTPUT_NODE
from ._inventory import Inventory
from ._messages import QUEUE_ID
from ._plan import (
    PER_CALL,
    Lookups,
    Plan,
    enqueue_body,
    enqueue_failure_work,
    enqueued,
    is_ours,
    model_of,
    new_destination,
    plan_image,
    request_from_item,
    requested_size,
)
from ._presets import apply_style_preset
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
from ._schedule import EVENTS_POLL, GONE_GRACE
from ._settings import DEFAULT_SETTINGS, validate_settings
from ._templates import GraphTemplate

if TYPE_CHECKING:
    import httpx
else:  # imported when a request is made (see degrees37_imagegen._lazy)
    httpx = lazy_module("httpx")

if TYPE_CHECKING:
    from ._async import AsyncInvokeAI

__all__ = ["InvokeAIGenerator"]

log = logging.getLogger(__name__)

#: At most this long (or ``timeout``, if shorter) to open the socket.io connection.
_EVENTS_OPEN_TIMEOUT = 10.0


class InvokeAIGenerator(Inventory, AsyncDriverSteps, BaseImageGenerator):
    """Makes images on an InvokeAI 6 server through its queue.

    Settings (see ``docs/generators/invokeai.md``): ``base_url``, ``default_model`` (a model
    key or name, or a full ``{key, hash, name, base, type}`` identifier), ``board_name``,
    ``max_wait``, ``timeout``, ``steps``, ``cfg_scale``, ``scheduler``, ``style_preset``,
    ``token``, ``graph_template``, ``graph_output_node``, ``map_sdxl_resolution``,
    ``keep_native_size``, ``retries``, ``poll_interval``, ``events``.

    ``submit``/``generate_image`` also take ``model``, ``style_preset``, ``steps``,
    ``cfg_scale``, ``scheduler`` and ``board_name`` for one image. A job's id is its queue
    item id. Safe to use from several threads at once; nothing touches the network before
    the first image (or :meth:`test_connection`). With ``events`` (the default) the
    generator keeps one socket.io connection to InvokeAI, opened before the first enqueue,
    and learns from its events when an item ends, how far it got, and the image a completed
    one made; the queue item is still read over HTTP (after a failure, for its error; now
    and then in case an event is lost; on the core's schedule whenever the socket is down).
    """

    default_settings: ClassVar[Mapping[str, Any]] = DEFAULT_SETTINGS
    secret_settings: ClassVar[frozenset[str]] = frozenset({"token"})
    path_settings: ClassVar[frozenset[str]] = frozenset({"graph_template"})
    server_setting: ClassVar[str | None] = "base_url"
    retry_base_delay: ClassVar[float] = 0.25
    known_options = PER_CALL

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self._template: GraphTemplate | None = None
        self._events: QueueEvents | None = None
        self._events_lock = threading.Lock()
        self._follows = Follows(self.max_image_records)
        self._uploads = UploadCache()  # content hash -> image name, per server
        #: The server's version, once :meth:`test_connection` has read it.
        self.server_version: str | None = None
        super().__init__(config, name=name, clock=clock, transport=transport)
        # The settings decide, per generator, what the core's class defaults say.
        self.max_retries = int(self.config["retries"])  # type: ignore[misc]
        self.poll_interval = float(self.config["poll_interval"])  # type: ignore[misc]
        self._api = InvokeAIAPI(
            self.base_url,
            token=self.config["token"],
            timeout=float(self.config["timeout"]),
            transport=transport,
        )
        self._catalog = Catalog(
            lambda path, params: self._read(path, params),
            lambda method, path, params: self._send(method, path, params=params),
        )

    def validate_config(self) -> None:
        """Check every setting (and load ``graph_template``); no network here."""
        self._template = validate_settings(self.config)
        try:
            self.config["loras"] = parse_loras(self.config["loras"])
        except InvalidRequestError as exc:
            raise ConfigError(str(exc).removeprefix("loras: "), key="loras") from None

    @property
    def base_url(self) -> str:
        """The server's root URL, without a trailing slash."""
        return str(self.config["base_url"])

    def test_connection(self) -> bool:
        """Whether ``GET /api/v1/app/version`` answers InvokeAI's JSON (not the web UI's HTML)."""
        try:
            data = self._api.call("GET", VERSION_PATH)
        except GeneratorError as exc:
            log.warning("InvokeAI at %s is not usable: %s", self.shown_server, exc)
            return False
        return self._heard_version(data)

    def _heard_version(self, data: Any) -> bool:
        """Keep the server's version from a ``/app/version`` answer; whether it is one
        (the sync and the async connection test)."""
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            log.warning("%s%s did not answer a version", self.shown_server, VERSION_PATH)
            return False
        self.server_version = data["version"]
        return True

    def close(self) -> None:
        """Close the HTTP connections and the socket.io connection, stopping its thread (a
        later call opens new ones)."""
        with self._events_lock:
            events, self._events = self._events, None
        if events is not None:
            events.close()
        self._api.close()

    def job_timeout(self) -> float | None:
        """``max_wait``: ``generate_image`` cancels the item after that long, then raises."""
        return float(self.config["max_wait"])

    # -- the async steps: each goes to the driver of the running loop (``_async``) -------

    def make_async_driver(self) -> AsyncInvokeAI:
        """A new async driver (clients and socket) for the running event loop."""
        from ._async import AsyncInvokeAI

        return AsyncInvokeAI(self)

    def poll_delay(self, polls: int) -> float:
        """The core's schedule, except for a job waited for on the event loop of an async
        driver whose events are live: an event ends its wait as soon as the job changes,
        the socket lost ends it too, and the driver reads the item itself when an event
        may have been lost (:data:`~._schedule.EVENTS_POLL`), so a wait that came back
        sooner would only come back with nothing."""
        if self.events_live_here():
            return max(EVENTS_POLL, self.poll_interval)
        return super().poll_delay(polls)

    # -- look-ups (see Catalog) ------------------------------------------------------------

    def board_id(self, board_name: str) -> str:
        """The id of the board called ``board_name``, created when there is none."""
        return self._catalog.board_id(board_name)

    def models(self, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's main models, cached."""
        return self._catalog.models(refresh)

    def resolve_model(self, spec: Any, *, setting: str | None = "default_model") -> dict[str, Any]:
        """The model record for ``spec`` (a key, a name, a full identifier, or ``None``)."""
        return self._catalog.resolve_model(spec, setting=setting)

    def style_presets(self, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's style presets, cached."""
        return self._catalog.style_presets(refresh)

    def style_preset(self, preset_name: str) -> dict[str, Any]:
        """The style preset called ``preset_name`` (the exact name first, then any case)."""
        return self._catalog.style_preset(preset_name)

    # -- the steps -------------------------------------------------------------------------

    def start_job(self, request: ImageRequest) -> JobRef:
        """Build the graph and enqueue it; return as soon as InvokeAI accepted the batch."""
        plan = plan_image(request, self.config, self._template, self._look_up(request))
        destination = new_destination(request.width, request.height, request.key)
        events = self._start_events()  # subscribed before enqueuing: no event is missed
        live = events is not None and events.live
        item = self._enqueue(enqueue_body(plan, destination), destination)
        ref = JobRef(str(item["item_id"]), self._ref_data(item, destination, plan))
        if live:
            self._follow(ref).poll.enqueued(self.clock.monotonic(), events_live=True)
        return ref

    def find_job(self, request: ImageRequest) -> JobRef | None:
        """The queue item enqueued for ``request`` (found by the destination its key makes),
        or ``None`` when InvokeAI has none (never enqueued, or pruned)."""
        destination = new_destination(request.width, request.height, request.key)
        items = self._api.call("GET", f"{QUEUE}/list_all", params={"destination": destination})
        found = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        if not found:
            return None
        plan = plan_image(request, self.config, self._template, self._look_up(request))
        return JobRef(str(found[0]["item_id"]), self._ref_data(found[0], destination, plan))

    def poll_job(self, ref: JobRef) -> JobUpdate:
        """Read the queue item once and say where the job is."""
        item = self._read_item(ref.id)
        destination = ref.data.get("destination")
        facts = ItemFacts.from_ref(ref.data, self._output_node())
        follow = self._follows.get(ref.id)
        if item is None and ref.id.isdigit():
            follow = self._follow(ref)  # with the events that came before it was watched
            follow.take(self.name)
            # Pruned just as it finished? Its last events, which name the image, may still
            # be on their way over the socket: give them a moment.
            end = self.clock.monotonic() + GONE_GRACE
            while follow.image is None and follow.watch is not None and self._events_live():
                left = end - self.clock.monotonic()
                if left <= 0:
                    break
                wait_for_news(self.clock, follow, left, True)
                follow.take(self.name)
        if item is None and follow is not None and follow.image is not None:
            # Pruned after it finished: its image is on the server, as an event said.
            update = image_update(int(ref.id), follow.image, facts)
        elif item is None:
            update = JobUpdate("canceled", error=self._deleted(ref.id))
        elif destination is not None and not is_ours(item, str(destination)):
            update = JobUpdate("canceled", error=self._deleted(ref.id, "replaced by another"))
        else:
            update = item_update(item, facts, self.name)
        if follow is not None:
            follow.poll.polled(self.clock.monotonic(), update.status)
        if update.status in ("done", "failed", "canceled"):
            self._follows.drop(ref.id)
        return update

    def wait_job(self, ref: JobRef, timeout: float) -> JobUpdate:
        """Wait up to ``timeout`` for news of the item: an event about it ends the wait early;
        the item is read over HTTP when an event says it may have ended, or when it is due."""
        follow = self._follow(ref)
        follow.take(self.name)
        if not follow.has_news:
            wait_for_news(self.clock, follow, timeout, self._events_live())
            follow.take(self.name)
        if follow.pending:
            return follow.pending.popleft()
        if follow.ended is not None:
            facts = ItemFacts.from_ref(ref.data, self._output_node())
            told = told_update(int(ref.id), follow.ended, follow.image, facts)
            if told is not None:  # the events said it all: no need to read the item
                self._follows.drop(ref.id)
                return told
        due = follow.poll.due(
            self.clock.monotonic(),
            events_live=follow.watch is not None and self._events_live(),
            look=follow.look,
            poll_interval=self.poll_interval,
        )
        if due:
            follow.look = False
            return self.poll_job(ref)
        return JobUpdate(follow.poll.status or "queued")

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> ImageData:
        """Stream the image, or, when it was generated at another size than requested (SDXL),
        read it whole and fit it (unless ``keep_native_size``)."""
        name = str(result["image_name"])
        requested = as_size(ref.data.get("size")) or requested_size(ref.data.get("destination"))
        how, size = fit_target(
            requested, as_size(result.get("size")), bool(self.config["keep_native_size"])
        )
        if how == "stream" or size is None:
            return self._api.stream_image(name, self.name)
        data = self.retrying(lambda: b"".join(self._api.stream_image(name, self.name)))
        try:
            return fit_png(data, size[0], size[1])
        except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises on a bad image
            raise IncompleteImageError(
                f"image {name} of queue item {ref.id} is not a whole image ({exc})", work="ran"
            ) from exc

    def cancel_job(self, ref: JobRef) -> bool:
        """Cancel our queue item (``PUT .../i/{id}/cancel``), only if it is ours and not over."""
        item = self._read_item(ref.id)
        destination = ref.data.get("destination")
        ours = item is not None and is_ours(item, None if destination is None else str(destination))
        if item is None or not ours:
            if item is not None:
                log.warning("queue item %s is not this job's: not canceling it", ref.id)
            return False
        if item.get("status") in TERMINAL_STATUSES:
            return False
        answer = self.retrying(self._api.call, "PUT", f"{QUEUE}/i/{ref.id}/cancel")
        acted = isinstance(answer, dict) and answer.get("status") == "canceled"
        if acted:
            self._follows.drop(ref.id)
        return acted

    def job_for_id(self, image_id: str) -> ImageJob:
        """The job of queue item ``image_id``, if this plugin enqueued it."""
        item = self._read_item(image_id) if image_id.isdigit() else None
        if item is None:
            raise GeneratorError(f"InvokeAI has no queue item {image_id!r}", generator=self.name)
        if not is_ours(item):
            raise GeneratorError(
                f"InvokeAI queue item {image_id} was not enqueued by this library: not "
                "following it",
                generator=self.name,
            )
        template = self._template
        session = item.get("session") or {}
        facts = ItemFacts(
            self._output_node(),
            model=model_of(session.get("graph")),
            seed_used=template is None or "seed" in template.placeholders,
        )
        data = {**self._ids(item, str(item.get("destination"))), **facts.to_ref()}
        job = ImageJob(self, request_from_item(item), JobRef(image_id, data))
        job.refresh()
        return job

    # -- helpers ---------------------------------------------------------------------------

    def _look_up(self, request: ImageRequest) -> Lookups:
        """Look up what the request names on the server: preset, model, board."""
        cfg, options = self.config, request.options
        prompts = None
        preset_name = options.get("style_preset", cfg["style_preset"])
        if preset_name:
            preset = self.style_preset(str(preset_name))
            prompts = apply_style_preset(preset, request.prompt, request.negative_prompt)
        model = None
        if self._names_a_model():
            setting = None if "model" in options else "default_model"
            model = self.resolve_model(options.get("model", cfg["default_model"]), setting=setting)
        loras = self._loras_for(options, model)
        board_name = options.get("board_name", cfg["board_name"])
        board_id = self.board_id(str(board_name)) if board_name else None
        images = self._upload_inputs(options)  # last: nothing is sent for a bad request
        return Lookups(prompts, model, board_id, images, loras)

    def _names_a_model(self) -> bool:
        """Whether the graph names a model (the built-in one does; a template may not)."""
        return self._template is None or "model" in self._template.placeholders

    def _output_node(self) -> str:
        return self._template.output_node if self._template is not None else OUTPUT_NODE

    @staticmethod
    def _ids(item: Mapping[str, Any], destination: str) -> dict[str, Any]:
        return {
            "queue_id": QUEUE_ID,
            "item_id": item.get("item_id"),
            "batch_id": item.get("batch_id"),
            "destination": destination,
        }

    def _ref_data(self, item: Mapping[str, Any], destination: str, plan: Plan) -> dict[str, Any]:
        size = requested_size(destination)
        return {
            **self._ids(item, destination),
            "size": list(size) if size else None,
            "steps": plan.steps,
            **plan.facts.to_ref(),
        }

    def _read(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """A GET, retried on connection, timeout and limit errors."""
        return self.retrying(self._api.call, "GET", path, params=params)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """A request that changes something: repeated only while it never reached the server."""
        return self.retrying_unsent(self._api.call, method, path, params=params, json=json)

    def _enqueue(self, body: dict[str, Any], destination: str) -> dict[str, Any]:
        """Enqueue ``body``; the new item's ids (``item_id``, ``batch_id``)."""
        try:
            answer = self._send("POST", f"{QUEUE}/enqueue_batch", json=body)
        except GeneratorError as exc:
            exc.work = enqueue_failure_work(exc)  # "unknown": the core looks it up first
            raise
        return enqueued(answer)

    def _read_item(self, item_id: str) -> dict[str, Any] | None:
        """The queue item, or ``None`` when InvokeAI has none by that id (deleted)."""
        try:
            item = self._read(f"{QUEUE}/i/{item_id}")
        except GeneratorError as exc:
            failure = item_read_failure(exc, item_id)
            if failure is None:
                return None
            raise failure from failure.__cause__
        return checked_item(item, item_id)

    def _deleted(self, item_id: str, how: str = "deleted") -> JobCanceledError:
        return JobCanceledError(
            f"InvokeAI queue item {item_id} was {how} before it finished", generator=self.name
        )

    # -- events ------------------------------------------------------------------------------

    def _start_events(self) -> QueueEvents | None:
        """The socket.io connection (opened on first use), or ``None`` with ``events`` off.

        The first call waits until the connection is subscribed or has failed, so that an
        item enqueued afterwards cannot end unseen; later calls do not wait.
        """
        if not self.config["events"]:
            return None
        with self._events_lock:
            events = self._events
            if events is None:
                events = self._events = QueueEvents(
                    self.base_url,
                    token=self.config["token"],
                    open_timeout=min(float(self.config["timeout"]), _EVENTS_OPEN_TIMEOUT),
                    generator=self.name,
                )
                # A generator dropped without close() must not leave its thread behind.
                weakref.finalize(self, events.close, False)
        events.start()
        return events

    def _events_live(self) -> bool:
        events = self._events
        return events is not None and events.live

    def _follow(self, ref: JobRef) -> Follow:
        follow = self._follows.get(ref.id)
        if follow is not None:
            return follow
        events = self._start_events()
        watch = events.watch(int(ref.id)) if events is not None and ref.id.isdigit() else None
        steps = ref.data.get("steps")
        destination = ref.data.get("destination")
        follow = Follow(
            watch,
            steps if isinstance(steps, int) else None,
            output_node=str(ref.data.get("output_node") or self._output_node()),
            destination=None if destination is None else str(destination),
        )
        return self._follows.add(ref.id, follow)
