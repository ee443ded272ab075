"""The InvokeAI generator: text-to-image through InvokeAI 6's queue API.

One image is one queue item: the generator builds a graph (SDXL or SD 1.x, shaped like the
web UI's, or the user's own ``graph_template``), enqueues it, follows *that* item by its id
until it ends, and reads the image name from the item's session results. Nothing is ever
enqueued twice for one request: a request that changes something is retried only when it
never reached the server.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from degrees37_imagegen.base import BaseImageGenerator, ImageInfo
from degrees37_imagegen.errors import (
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    InvalidRequestError,
)
from degrees37_imagegen.files import atomic_path, verify_image
from degrees37_imagegen.progress import Progress, ProgressCallback, Stage
from degrees37_imagegen.retry import retry_with_backoff

from ._events import ItemWatch, QueueEvents, event_progress
from ._graphs import (
    OUTPUT_NODE,
    SD1_BASES,
    SDXL_BASES,
    SUPPORTED_BASES,
    GraphRequest,
    build_enqueue_body,
    build_text_to_image,
)
from ._http import check_response, json_body, transport_error, was_not_sent
from ._presets import apply_style_preset
from ._queue import (
    TERMINAL_STATUSES,
    PollSchedule,
    item_error,
    match_model,
    model_identifier,
    result_image,
)
from ._resolution import fit_image_file, round_to_multiple, sdxl_resolution
from ._settings import (
    DEFAULT_SETTINGS,
    FALLBACK_CFG_SCALE,
    FALLBACK_SCHEDULER,
    FALLBACK_STEPS,
    check_sampling,
    validate_settings,
)
from ._templates import GraphTemplate
from .errors import QueueItemError

__all__ = ["InvokeAIGenerator"]

log = logging.getLogger(__name__)

_QUEUE = "/api/v1/queue/default"
_ORIGIN = "degrees37-imagegen"
#: Keyword arguments of generate_image that override a setting for one image.
_PER_CALL = frozenset({"model", "style_preset", "steps", "cfg_scale", "scheduler", "board_name"})
#: Seconds between polls of an item still waiting behind others: it has to start before it
#: can end, and a batch keeps several items waiting, so they are polled gently.
_PENDING_POLL = 0.25
#: Seconds between polls while InvokeAI's socket.io events are live: an event says when an
#: item ends, so polling only guards against a lost event.
_EVENTS_POLL = 1.0
#: At most this long (or ``timeout``, if shorter) to open the socket.io connection.
_EVENTS_OPEN_TIMEOUT = 10.0


def _wait_event(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


@dataclass
class _Job:
    """One image's graph and what to record about it."""

    graph: dict[str, Any]
    data: list[list[dict[str, Any]]] | None
    output_node: str
    model: dict[str, Any] | None
    generated: tuple[int, int] | None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The sampler steps, when known: denoising progress is reported in steps of it.
    steps: int | None = None


class _Stages:
    """Reports ``queued`` and ``running`` once each, whether a poll or an event saw it."""

    _STAGES: ClassVar[dict[str, Stage]] = {"pending": "queued", "in_progress": "running"}

    def __init__(self, report: Callable[[Progress], None], item_id: int, generator: str) -> None:
        self._report = report
        self._item_id = item_id
        self._generator = generator
        self._seen: str | None = None

    def status(self, status: str) -> None:
        stage = self._STAGES.get(status)
        if stage is None or stage == self._seen or (stage, self._seen) == ("queued", "running"):
            return
        self._seen = stage
        self._report(Progress(stage, f"queue item {self._item_id}", generator=self._generator))


class InvokeAIGenerator(BaseImageGenerator):
    """Makes images on an InvokeAI 6 server through its queue.

    Settings (see ``docs/generators/invokeai.md``): ``base_url``, ``default_model`` (a model
    key or name, or a full ``{key, hash, name, base, type}`` identifier), ``board_name``,
    ``max_wait``, ``timeout``, ``steps``, ``cfg_scale``, ``scheduler``, ``style_preset``,
    ``token``, ``graph_template``, ``graph_output_node``, ``map_sdxl_resolution``,
    ``keep_native_size``, ``retries``, ``poll_interval``, ``events``.

    ``generate_image`` also takes ``model``, ``style_preset``, ``steps``, ``cfg_scale``,
    ``scheduler`` and ``board_name`` keyword arguments for one image, and ``on_progress``.
    Safe to use from several threads at once; nothing touches the network before the first
    image (or :meth:`test_connection`). With ``events`` (the default) the generator keeps
    one socket.io connection to InvokeAI, opened before the first enqueue, and learns from
    its events when an item ends and how far it got; the queue item is still read over HTTP
    (and polled, slowly, in case an event is lost; quickly whenever the socket is down).
    """

    default_settings: ClassVar[Mapping[str, Any]] = DEFAULT_SETTINGS
    secret_settings: ClassVar[frozenset[str]] = frozenset({"token"})
    path_settings: ClassVar[frozenset[str]] = frozenset({"graph_template"})
    server_setting: ClassVar[str | None] = "base_url"

    def __init__(self, config: Mapping[str, Any] | None = None, *, name: str | None = None):
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._boards: dict[str, str] = {}
        self._boards_lock = threading.Lock()
        self._models: list[dict[str, Any]] | None = None
        self._models_lock = threading.Lock()
        self._presets: list[dict[str, Any]] | None = None
        self._presets_lock = threading.Lock()
        self._template: GraphTemplate | None = None
        self._events: QueueEvents | None = None
        self._events_lock = threading.Lock()
        # The waiting loop's clock, sleep and wait for an event (with a timeout in seconds);
        # tests replace them to run without waiting.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], None] = time.sleep
        self._wait: Callable[[threading.Event, float], bool] = _wait_event
        #: The server's version, once :meth:`test_connection` has read it.
        self.server_version: str | None = None
        super().__init__(config, name=name)

    def validate_config(self) -> None:
        """Check every setting (and load ``graph_template``); no network here."""
        self._template = validate_settings(self.config)

    @property
    def base_url(self) -> str:
        """The server's root URL, without a trailing slash."""
        return str(self.config["base_url"])

    # -- HTTP ----------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                headers = {"Accept": "application/json"}
                token = self.config["token"]
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                self._client = httpx.Client(
                    base_url=self.base_url,
                    timeout=float(self.config["timeout"]),
                    headers=headers,
                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                )
            return self._client

    def close(self) -> None:
        """Close the HTTP connections and the socket.io connection, stopping its thread (a
        later call opens new ones)."""
        with self._events_lock:
            events, self._events = self._events, None
        if events is not None:
            events.close()
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

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

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        retry: bool = True,
    ) -> Any:
        """A request answered with JSON; ``retry`` only for requests safe to repeat."""

        def once() -> Any:
            log.debug("%s %s %s", method, path, dict(params or {}))
            try:
                response = self._http().request(method, path, params=params, json=json)
            except httpx.HTTPError as exc:
                raise transport_error(exc, method, self.base_url + path, self.name) from exc
            check_response(response, self.name)
            return json_body(response, self.name)

        return self._retrying(once)() if retry else once()

    def _retrying(self, func: Callable[[], Any]) -> Callable[[], Any]:
        return retry_with_backoff(
            max_retries=int(self.config["retries"]),
            base_delay=0.25,
            max_delay=4.0,
            sleep=self._sleep,
        )(func)

    def _call_if_unsent(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request that changes something: retried only when it never reached the server."""
        attempt = 0
        while True:
            try:
                return self._call(method, path, retry=False, **kwargs)
            except GeneratorConnectionError as exc:
                if not was_not_sent(exc) or attempt >= int(self.config["retries"]):
                    raise
                attempt += 1
                delay = min(4.0, 0.25 * 2 ** (attempt - 1))
                log.info(
                    "%s %s did not reach InvokeAI (%s); retry in %.2fs", method, path, exc, delay
                )
                self._sleep(delay)

    def test_connection(self) -> bool:
        """Whether ``GET /api/v1/app/version`` answers InvokeAI's JSON (not the web UI's HTML)."""
        try:
            data = self._call("GET", "/api/v1/app/version", retry=False)
        except GeneratorError as exc:
            log.warning("InvokeAI at %s is not usable: %s", self.base_url, exc)
            return False
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            log.warning("%s/api/v1/app/version did not answer a version", self.base_url)
            return False
        self.server_version = data["version"]
        return True

    # -- look-ups, each made once under a lock ------------------------------------------

    def board_id(self, board_name: str) -> str:
        """The id of the board called ``board_name``, created when there is none."""
        with self._boards_lock:
            cached = self._boards.get(board_name)
            if cached is not None:
                return cached
            board = self._find_board(board_name) or self._create_board(board_name)
            self._boards[board_name] = str(board["board_id"])
            return self._boards[board_name]

    def _find_board(self, board_name: str) -> dict[str, Any] | None:
        boards = self._call("GET", "/api/v1/boards/", params={"all": "true"})
        matches = [b for b in boards if isinstance(b, dict) and b.get("board_name") == board_name]
        # Several boards may share a name; always take the oldest, so that every run agrees.
        return min(matches, key=lambda b: str(b.get("created_at", ""))) if matches else None

    def _create_board(self, board_name: str) -> dict[str, Any]:
        try:
            board = self._call_if_unsent(
                "POST", "/api/v1/boards/", params={"board_name": board_name}
            )
        except (GeneratorConnectionError, GeneratorTimeoutError):
            # The board may exist though the answer was lost: look before failing.
            found = self._find_board(board_name)
            if found is None:
                raise
            return found
        log.info("created InvokeAI board %r (%s)", board_name, board.get("board_id"))
        return dict(board)

    def models(self, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's main models (``GET /api/v2/models/?model_type=main``), cached."""
        with self._models_lock:
            if self._models is None or refresh:
                data = self._call("GET", "/api/v2/models/", params={"model_type": "main"})
                models = data.get("models") if isinstance(data, dict) else None
                if not isinstance(models, list):
                    raise GeneratorError(
                        "GET /api/v2/models/ answered no model list", generator=self.name
                    )
                self._models = [m for m in models if isinstance(m, dict)]
            return list(self._models)

    def resolve_model(self, spec: Any, *, setting: str | None = "default_model") -> dict[str, Any]:
        """The model record for ``spec``: a key, a name, a full identifier, or ``None``.

        ``None`` picks the first SDXL main model by name, else the first SD 1.x/2.x one. An
        unknown model is a :class:`ConfigError` naming ``setting`` (an
        :class:`InvalidRequestError` when ``setting`` is ``None``) listing installed models.
        """
        if isinstance(spec, Mapping):
            return model_identifier(spec)
        models = self.models()
        if spec is None:
            for bases in (SDXL_BASES, SD1_BASES):
                usable = sorted(
                    (m for m in models if m.get("base") in bases), key=lambda m: str(m.get("name"))
                )
                if usable:
                    log.info("default_model is not set; using %r", usable[0].get("name"))
                    return usable[0]
            raise self._model_error(
                "is not set and InvokeAI has no SDXL or SD 1.x model", models, setting
            )
        found = match_model(models, str(spec))
        if found is None:
            models = self.models(refresh=True)  # installed since the list was read?
            found = match_model(models, str(spec))
        if found is None:
            raise self._model_error(f"InvokeAI has no main model {spec!r}", models, setting)
        return found

    def _model_error(
        self, problem: str, models: list[dict[str, Any]], setting: str | None
    ) -> GeneratorError:
        installed = ", ".join(
            f"{m.get('name')} ({m.get('base')}, key {m.get('key')})" for m in models
        )
        message = f"{problem}; installed main models: {installed or 'none'}"
        if setting is None:
            return InvalidRequestError(f"model: {message}", generator=self.name)
        return ConfigError(message, key=setting, generator=self.name)

    def style_presets(self, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's style presets (``GET /api/v1/style_presets/``), cached."""
        with self._presets_lock:
            if self._presets is None or refresh:
                data = self._call("GET", "/api/v1/style_presets/")
                if not isinstance(data, list):
                    raise GeneratorError(
                        "GET /api/v1/style_presets/ answered no list", generator=self.name
                    )
                self._presets = [p for p in data if isinstance(p, dict)]
            return list(self._presets)

    def style_preset(self, preset_name: str) -> dict[str, Any]:
        """The style preset called ``preset_name`` (the exact name first, then any case).

        An unknown name raises :class:`InvalidRequestError` listing the available presets.
        """
        presets: list[dict[str, Any]] = []
        for refresh in (False, True):
            presets = self.style_presets(refresh=refresh)
            for exact in (True, False):
                for preset in presets:
                    name = str(preset.get("name", ""))
                    if name == preset_name or (
                        not exact and name.casefold() == preset_name.casefold()
                    ):
                        return preset
        names = ", ".join(sorted(str(p.get("name")) for p in presets)) or "none"
        raise InvalidRequestError(
            f"style_preset: InvokeAI has no style preset {preset_name!r}; available: {names}",
            generator=self.name,
        )

    # -- generating ----------------------------------------------------------------------

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        """Make one image on InvokeAI and return its image name.

        :meth:`download_image` then gives an image of ``width`` x ``height`` (see
        ``map_sdxl_resolution`` and ``keep_native_size``). Raises :class:`QueueItemError`
        with InvokeAI's own error when the item fails, :class:`InvalidRequestError` for a
        request InvokeAI refuses, :class:`GeneratorTimeoutError` after ``max_wait`` seconds
        (the item is canceled on the server first).
        """
        on_progress: ProgressCallback | None = kwargs.pop("on_progress", None)
        unknown = sorted(set(kwargs) - _PER_CALL)
        if unknown:
            log.warning("generator %r ignores the arguments %s", self.name, ", ".join(unknown))
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise InvalidRequestError(
                "prompt and negative_prompt must be text", generator=self.name
            )
        width, height = self.validate_dimensions(width, height)
        seed = self.resolve_seed(seed)
        job = self._prepare(prompt, negative_prompt, width, height, seed, kwargs)

        # A destination unique to this request finds the item again if the enqueue's answer
        # is lost, instead of enqueuing a second image.
        destination = f"{_ORIGIN}:{uuid.uuid4().hex}"
        body = build_enqueue_body(job.graph, job.data, origin=_ORIGIN, destination=destination)
        started = self._clock()
        events = self._start_events()  # subscribed before enqueuing: no event is missed
        item_id = self._enqueue(body, destination)
        self.report(
            on_progress, Progress("submitted", f"queue item {item_id}", generator=self.name)
        )
        item = self._follow(item_id, started, on_progress, events, job.steps)

        image_name, out_width, out_height = result_image(item, job.output_node, self.name)
        generated = job.generated
        if generated is None and out_width and out_height:
            generated = (out_width, out_height)
        job.extra["queue_item"] = item_id
        self.record_image(
            ImageInfo(
                image_id=image_name,
                generator=self.name,
                prompt=prompt,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                seed=seed,
                model=job.model["name"] if job.model else None,
                generated_width=generated[0] if generated else None,
                generated_height=generated[1] if generated else None,
                extra=job.extra,
            )
        )
        # "done" is reported by whoever saves the file (generate_to_file), after the download.
        return image_name

    def _prepare(
        self,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        seed: int,
        overrides: Mapping[str, Any],
    ) -> _Job:
        """Look up what the request names (preset, model, board) and build its graph."""
        cfg = self.config
        steps, cfg_scale, scheduler = check_sampling(
            overrides.get("steps", cfg["steps"]),
            overrides.get("cfg_scale", cfg["cfg_scale"]),
            overrides.get("scheduler", cfg["scheduler"]),
            config=False,
        )
        extra: dict[str, Any] = {}
        positive, negative = prompt, negative_prompt
        preset_name = overrides.get("style_preset", cfg["style_preset"])
        if preset_name:
            preset = self.style_preset(str(preset_name))
            positive, negative = apply_style_preset(preset, prompt, negative_prompt)
            extra.update(style_preset=preset_name, invokeai_prompt=positive)
            extra["invokeai_negative_prompt"] = negative

        template = self._template
        record: dict[str, Any] | None = None
        if template is None or "model" in template.placeholders:
            setting = None if "model" in overrides else "default_model"
            record = self.resolve_model(
                overrides.get("model", cfg["default_model"]), setting=setting
            )
        model = model_identifier(record) if record is not None else None

        board_name = overrides.get("board_name", cfg["board_name"])
        board_id = self.board_id(str(board_name)) if board_name else None
        if board_name:
            extra["board"] = board_name

        if template is not None:
            values = {
                "prompt": positive,
                "negative_prompt": negative,
                "width": width,
                "height": height,
                "seed": seed,
                "steps": steps or FALLBACK_STEPS,
                "cfg_scale": cfg_scale or FALLBACK_CFG_SCALE,
                "scheduler": scheduler or FALLBACK_SCHEDULER,
                "model": model,
            }
            extra["graph_template"] = template.source
            graph = template.render(values, board_id)
            # The generated size is known only from the result.
            used_steps = (steps or FALLBACK_STEPS) if "steps" in template.placeholders else None
            return _Job(graph, None, template.output_node, model, None, extra, used_steps)

        assert record is not None
        assert model is not None
        base = model["base"]
        if base not in SUPPORTED_BASES:
            raise InvalidRequestError(
                f"model {model['name']!r} is a {base!r} model; the built-in graphs support "
                f"{', '.join(sorted(SUPPORTED_BASES))} (a graph_template can run others)",
                generator=self.name,
            )
        defaults = record.get("default_settings") or {}
        steps = steps or defaults.get("steps") or FALLBACK_STEPS
        cfg_scale = cfg_scale or defaults.get("cfg_scale") or FALLBACK_CFG_SCALE
        scheduler = scheduler or defaults.get("scheduler") or FALLBACK_SCHEDULER
        if base in SDXL_BASES and cfg["map_sdxl_resolution"]:
            generated = sdxl_resolution(width, height)
        else:
            generated = (round_to_multiple(width), round_to_multiple(height))
        graph, data = build_text_to_image(
            GraphRequest(
                positive_prompt=positive,
                negative_prompt=negative,
                width=generated[0],
                height=generated[1],
                seed=seed,
                steps=int(steps),
                cfg_scale=float(cfg_scale),
                scheduler=str(scheduler),
                model=model,
                board_id=board_id,
                vae_fp32=defaults.get("vae_precision") == "fp32",
            )
        )
        extra.update(steps=steps, cfg_scale=cfg_scale, scheduler=scheduler)
        return _Job(graph, data, OUTPUT_NODE, model, generated, extra, int(steps))

    def _enqueue(self, body: dict[str, Any], destination: str) -> int:
        try:
            answer = self._call_if_unsent("POST", f"{_QUEUE}/enqueue_batch", json=body)
        except (GeneratorConnectionError, GeneratorTimeoutError) as exc:
            # The request may have reached the server and been queued: look for it rather
            # than enqueue it again.
            item = self._find_enqueued(destination)
            if item is None:
                raise type(exc)(
                    f"{exc}; no image was queued, and the request was not repeated since it "
                    "may have reached the server",
                    generator=self.name,
                ) from exc
            log.info("the enqueue's answer was lost but item %s is queued", item["item_id"])
            return int(item["item_id"])
        item_ids = answer.get("item_ids") if isinstance(answer, dict) else None
        if not isinstance(item_ids, list) or len(item_ids) != 1:
            raise GeneratorError(
                f"enqueue answered item_ids {item_ids!r}, not one id", generator=self.name
            )
        return int(item_ids[0])

    def _find_enqueued(self, destination: str) -> dict[str, Any] | None:
        try:
            items = self._call("GET", f"{_QUEUE}/list_all", params={"destination": destination})
        except GeneratorError as exc:
            log.warning("could not check whether the image was queued: %s", exc)
            return None
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return items[0]
        return None

    def _follow(
        self,
        item_id: int,
        started: float,
        on_progress: ProgressCallback | None,
        events: QueueEvents | None = None,
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Wait until the queue item ends; return it when it completed.

        The item is read over HTTP each time (the source of truth). In between, with live
        socket.io events, the wait ends as soon as an event says the item ended (or the
        socket drops), and the item is re-read at least every second anyway; without them,
        it is polled with a backoff from 10 ms up to ``poll_interval``.
        """
        deadline = started + float(self.config["max_wait"])
        poll_interval = float(self.config["poll_interval"])
        schedule = PollSchedule(cap=poll_interval)
        stages = _Stages(lambda p: self.report(on_progress, p), item_id, self.name)
        watch = events.watch(item_id) if events is not None else None
        failures = 0
        last_status: str | None = None
        try:
            while True:
                if watch is not None:  # the poll below looks at whatever they announced
                    self._report_events(watch.drain()[0], stages, on_progress, steps)
                delay = None
                try:
                    item = self._call("GET", f"{_QUEUE}/i/{item_id}", retry=False)
                except (
                    GeneratorConnectionError,
                    GeneratorTimeoutError,
                    GeneratorLimitError,
                ) as exc:
                    # The item lives on the server; ride out a short outage.
                    failures += 1
                    if failures > int(self.config["retries"]):
                        raise GeneratorConnectionError(
                            f"lost InvokeAI while waiting for queue item {item_id}: {exc}",
                            generator=self.name,
                        ) from exc
                    delay = min(4.0, 0.25 * 2 ** (failures - 1))
                except GeneratorError as exc:
                    if getattr(exc, "status_code", None) == 404:
                        raise QueueItemError(
                            f"InvokeAI queue item {item_id} was deleted before it finished",
                            item_id=item_id,
                            status="deleted",
                            generator=self.name,
                        ) from exc
                    raise
                else:
                    failures = 0
                    status = str(item.get("status"))
                    stages.status(status)
                    if status != last_status:
                        last_status = status
                        # Poll fast from the moment it runs: small items end within a second.
                        schedule = PollSchedule(cap=poll_interval)
                    if status == "pending":
                        # Waiting behind other items: nothing can finish soon, poll gently.
                        delay = max(_PENDING_POLL, poll_interval)
                    if status == "completed":
                        return dict(item)
                    if status in TERMINAL_STATUSES:
                        raise item_error(item, self.name)
                now = self._clock()
                if now >= deadline:
                    return self._give_up(item_id)
                if watch is not None and watch.hub.live:
                    wait = max(_EVENTS_POLL, poll_interval)
                    if failures and delay is not None:
                        wait = delay
                    self._await_events(watch, min(now + wait, deadline), stages, on_progress, steps)
                else:
                    self._sleep(min(delay or schedule.next_delay(), deadline - now))
        finally:
            if watch is not None:
                watch.close()

    def _await_events(
        self,
        watch: ItemWatch,
        until: float,
        stages: _Stages,
        on_progress: ProgressCallback | None,
        steps: int | None,
    ) -> None:
        """Report the item's events until one says to look at it, the socket is lost, or
        ``until`` (a :attr:`_clock` time) comes."""
        while True:
            events, look = watch.drain()
            self._report_events(events, stages, on_progress, steps)
            if look or not watch.hub.live:
                return
            remaining = until - self._clock()
            if remaining <= 0:
                return
            self._wait(watch.wake, remaining)

    def _report_events(
        self,
        events: list[tuple[str, dict[str, Any]]],
        stages: _Stages,
        on_progress: ProgressCallback | None,
        steps: int | None,
    ) -> None:
        for name, data in events:
            if name == "queue_item_status_changed":
                stages.status(str(data.get("status")))
                continue
            progress = event_progress(name, data, steps=steps, generator=self.name)
            if progress is not None:
                self.report(on_progress, progress)

    def _give_up(self, item_id: int) -> dict[str, Any]:
        """Cancel the item after ``max_wait`` and raise (unless it just completed)."""
        max_wait = self.config["max_wait"]
        try:
            item = self._call_if_unsent("PUT", f"{_QUEUE}/i/{item_id}/cancel")
        except GeneratorError as exc:
            raise GeneratorTimeoutError(
                f"InvokeAI queue item {item_id} did not finish within max_wait={max_wait}s "
                f"and could not be canceled: {exc}",
                generator=self.name,
            ) from exc
        if isinstance(item, dict) and item.get("status") == "completed":
            return item  # InvokeAI does not cancel a finished item: it completed in time
        raise GeneratorTimeoutError(
            f"InvokeAI queue item {item_id} did not finish within max_wait={max_wait}s; "
            "canceled it on the server",
            generator=self.name,
        )

    # -- downloading ---------------------------------------------------------------------

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        """Stream the image to a temporary file, check it, fit it, move it into place.

        An image generated at another size than requested (SDXL) is scaled (LANCZOS) and
        centre-cropped to the requested size, unless ``keep_native_size`` is set; the PNG
        then says ``imagegen:resized_from``.
        """
        info = self.image_info(image_id)
        fit_to = (
            None if info is None or self.config["keep_native_size"] else (info.width, info.height)
        )
        path = f"/api/v1/images/i/{quote(image_id, safe='')}/full"

        def attempt() -> None:
            with atomic_path(output_path) as tmp:
                self._stream_to(path, tmp)
                _, size = verify_image(tmp)
                if fit_to is not None and size != fit_to:
                    text = {"imagegen:resized_from": f"{size[0]}x{size[1]}"}
                    with atomic_path(tmp, suffix=".fit") as fitted:
                        fit_image_file(tmp, fitted, fit_to[0], fit_to[1], text)
                    verify_image(tmp)

        self._retrying(attempt)()
        return True

    def _stream_to(self, path: str, destination: Path) -> None:
        url = self.base_url + path
        try:
            with self._http().stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    check_response(response, self.name)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("image/"):
                    raise GeneratorError(
                        f"GET {url} answered {content_type or 'no content type'}, not an image",
                        generator=self.name,
                    )
                with open(destination, "wb") as fh:
                    for chunk in response.iter_bytes(chunk_size=1 << 16):
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "GET", url, self.name) from exc
