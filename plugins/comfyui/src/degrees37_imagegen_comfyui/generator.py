"""The ComfyUI generator: drives any API-format workflow by prompt, size and seed.

A thin driver of the core's job steps: what to send and what answers and messages mean
live in ``_settings``, ``_workflow``, ``_protocol``, ``_monitor`` and ``_errors`` (no
I/O); ``_api`` and ``_watch`` talk to the server.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from degrees37_imagegen.async_driver import AsyncDriverSteps
from degrees37_imagegen.base import BaseImageGenerator
from degrees37_imagegen.errors import ConfigError, GeneratorError, InvalidRequestError
from degrees37_imagegen.images import (
    UploadCache,
    parse_loras,
)
from degrees37_imagegen.job import TERMINAL, ImageJob, JobRef, JobUpdate
from degrees37_imagegen.request import ImageRequest

from ._api import ComfyUIAPI, PromptMaybeSubmitted, parse_server_address
from ._img2img import (
    add_lora_chain,
    fill_titled_images,
    titled_image_nodes,
)
from ._inventory import Inventory
from ._inventory import config_mapping as _mapping
from ._monitor import PromptTracker
from ._protocol import (
    CANCEL_SETTLE,
    cancel_action,
    canceled_by_us,
    history_client_id,
    output_images,
    prompt_body,
    queue_state,
    read_request,
    stats_ready,
)
from ._samplers import DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS
from ._settings import (
    check_headers,
    check_sampler,
    check_seconds,
    check_template_fields,
    check_timeout_option,
    field_settings,
    known_options,
    output_index,
    request_extra,
    request_values,
)
from ._watch import Follower, Watch, open_socket
from ._workflow import BUILTIN_DEFAULTS, WorkflowTemplate, builtin_workflow, load_workflow

if TYPE_CHECKING:
    from ._async import AsyncComfyUI

__all__ = ["ComfyUIGenerator"]

log = logging.getLogger("degrees37_imagegen_comfyui")

#: Prompts followed at once with an open WebSocket; older ones reconnect when waited for.
MAX_SOCKETS = 64


class ComfyUIGenerator(Inventory, AsyncDriverSteps, BaseImageGenerator):
    """Makes images with a ComfyUI server by filling in an API-format workflow.

    Without ``workflow_template`` it uses ComfyUI's standard text-to-image workflow
    (checkpoint, two text encoders, empty latent, KSampler, VAE decode, save). Where the
    prompt, size, seed and the other fields go in a template is found from the ``mapping``
    setting, ``{{placeholders}}``, node titles, or the standard graph (see the docs), and
    checked when the generator is created.

    Each job has its own client id and WebSocket, opened before the prompt is submitted,
    so that jobs (from several threads, generators or processes) never see each other's
    messages. A job's id is its prompt id. An injected ``transport`` carries all HTTP, and
    jobs are then followed by polling alone.
    """

    default_settings: ClassVar[Mapping[str, Any]] = {
        "server_address": "127.0.0.1:8188",
        "workflow_template": None,
        "mapping": None,
        "values": None,
        "timeout": 600.0,
        "request_timeout": 30.0,
        "connect_timeout": 10.0,
        "poll_interval": 5.0,
        "headers": None,
        "api_key": None,
        "verify_ssl": True,
        "checkpoint": None,
        "steps": None,
        "cfg": None,
        "sampler": None,
        "scheduler": None,
        "loras": None,
    }
    secret_settings: ClassVar[frozenset[str]] = frozenset({"headers", "api_key"})
    path_settings: ClassVar[frozenset[str]] = frozenset({"workflow_template"})
    server_setting: ClassVar[str | None] = "server_address"

    # -- configuration -------------------------------------------------------------------

    def validate_config(self) -> None:
        """Check every setting and the workflow mapping; no network is used."""
        cfg = self.config
        self.http_url, self.ws_url = parse_server_address(str(cfg["server_address"] or ""))
        self.timeout = check_seconds(cfg, "timeout")
        self.request_timeout = check_seconds(cfg, "request_timeout")
        self.connect_timeout = check_seconds(cfg, "connect_timeout")
        self._poll_every = check_seconds(cfg, "poll_interval")
        self._headers = check_headers(cfg)
        if not isinstance(cfg["verify_ssl"], bool):
            raise ConfigError(f"must be true or false, got {cfg['verify_ssl']!r}", key="verify_ssl")
        self._settings = field_settings(cfg)
        values = cfg["values"]
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError("must map field names to values", key="values")
        self._values: dict[str, Any] = dict(values or {})
        self.template = _template(cfg)
        if self.template.builtin:
            for key, value in BUILTIN_DEFAULTS.items():
                if self._settings.get(key) is None:
                    self._settings[key] = value
        check_template_fields(self.template, self._settings, self._values)
        self.known_options = known_options(self.template)
        ignored = [f for f in ("prompt", "seed", "width", "height") if not self.template.has(f)]
        if ignored:
            log.info(
                "generator %r: the workflow template (%s) has no place for %s; those "
                "request values are ignored",
                self.name,
                self.template.name,
                ", ".join(ignored),
            )
        self._api = ComfyUIAPI(
            self.http_url,
            headers=self._headers,
            timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
            verify=bool(cfg["verify_ssl"]),
            transport=self.transport,
        )
        connect = functools.partial(
            open_socket,
            self.ws_url,
            headers=self._headers,
            verify_ssl=bool(cfg["verify_ssl"]),
            connect_timeout=self.connect_timeout,
        )
        self._follower = Follower(
            self._api,
            connect=None if self.transport is not None else connect,
            clock=self.clock,
            poll_interval=self._poll_every,
            retrying=self.retrying,
            generator=self.name,
        )
        self._lock = threading.Lock()
        self._choices: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._watches: OrderedDict[str, Watch] = OrderedDict()
        try:
            self._loras = parse_loras(cfg["loras"])
        except InvalidRequestError as exc:
            raise ConfigError(str(exc).removeprefix("loras: "), key="loras") from None
        self._uploads = UploadCache()  # content hash -> LoadImage value, per server
        self._img2img_template: WorkflowTemplate | None = None

    def poll_delay(self, polls: int) -> float:
        """Waits between looks at a job grow from 10 ms to the ``poll_interval`` setting;
        on the loop of an async driver whose socket is read, a wait lasts the
        ``poll_interval``: the prompt's messages (or the socket lost) end it sooner, and it
        reads ``/history`` when it ends with none (at most once a ``poll_interval``, as
        before, for a prompt whose messages go to the client that queued it)."""
        if self.events_live_here():
            return self._poll_every
        if polls <= 0:
            return 0.0
        # The exponent is capped: 1.5 ** 1800 overflows a float (after a long wait).
        return float(min(self._poll_every, 0.01 * 1.5 ** min(polls - 1, 64)))

    def job_timeout(self) -> float | None:
        """The ``timeout`` setting: how long ``generate_image`` waits before canceling."""
        return self.timeout

    # -- the steps ---------------------------------------------------------------------------

    def test_connection(self) -> bool:
        """Whether ComfyUI answers ``/system_stats``."""
        try:
            return stats_ready(self._api.system_stats())
        except GeneratorError as exc:
            log.info("ComfyUI at %s is not ready: %s", self._api.shown_url, exc)
            return False

    def validate_dimensions(self, width: int, height: int) -> tuple[int, int]:
        """The size the workflow really makes: latents are 1/8 of the image, so a size
        that goes into an empty *latent* is rounded down to a multiple of 8."""
        width, height = super().validate_dimensions(width, height)
        targets = self.template.targets.get("width", ())
        if any("Latent" in self.template.class_type(t.node) for t in targets):
            if width < 16 or height < 16:
                raise InvalidRequestError(
                    f"{width}x{height} is too small: this workflow needs at least 16x16"
                )
            return width - width % 8, height - height % 8
        return width, height

    def start_job(self, request: ImageRequest) -> JobRef:
        """Fill the workflow in and queue it; return once ComfyUI accepted it.

        Options: ``steps``, ``cfg``, ``sampler``, ``scheduler``, ``checkpoint`` and the
        template's own fields override the settings for this image; ``output_index``
        chooses which of the prompt's images is fetched (default: the first). The socket
        is opened (as a new client id) before the prompt is sent. The prompt id is the
        request's key, so that a lost answer is found (:meth:`find_job`), never sent twice.
        """
        client_id = uuid.uuid4().hex
        prompt_id = request.key or str(uuid.uuid4())
        workflow, data = self._prepare(request, client_id)
        watch = self._new_watch(prompt_id, data)
        if self._follower.connect(watch):  # before submitting, so that no message is missed
            watch.last_poll = self.clock.monotonic()  # the socket tells; poll when quiet
        try:
            answer = self._submit(workflow, client_id, prompt_id)
        except BaseException:
            self._follower.close(watch)
            raise
        if answer.get("node_errors"):
            log.warning(
                "ComfyUI queued prompt %s but reported errors for some outputs: %s",
                prompt_id,
                answer["node_errors"],
            )
        self._keep(watch)
        return JobRef(prompt_id, data)

    def _prepare(
        self, request: ImageRequest, client_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The workflow to queue for ``request`` and the job's ``JobRef.data``: what the sync
        and the async driver (``_async``) both send."""
        check_timeout_option(request.options)
        index = output_index(request.options)
        template, request, images, loras = self._inputs(request)
        values, overrides = request_values(template, request, self._settings, self._values)
        if template.has("sampler") or template.has("scheduler"):
            samplers, schedulers = self._sampler_choices()
            explicit = overrides["scheduler"] is not None or self.config["scheduler"] is not None
            check_sampler(
                values,
                samplers,
                schedulers,
                explicit_scheduler=explicit,
                has_scheduler=template.has("scheduler"),
            )
        workflow = template.render(values)
        fill_titled_images(workflow, titled_image_nodes(template.nodes), images)
        add_lora_chain(workflow, loras)
        data: dict[str, Any] = {
            "client_id": client_id,
            "seed_used": template.has("seed"),
            "model": values.get("checkpoint") if template.has("checkpoint") else None,
            "extra": {**request_extra(template, values), **_lora_extra(loras)},
        }
        if index:
            data["output_index"] = index
        return workflow, data

    def find_job(self, request: ImageRequest) -> JobRef | None:
        """The prompt whose id is ``request.key``, in ``/queue`` or else in ``/history``
        (in that order: ComfyUI moves a finished prompt from one to the other at once)."""
        prompt_id = request.key
        state = queue_state(self._api.queue(), prompt_id)
        client_id = state.client_id
        if state.where is None:
            entry = self._api.history(prompt_id)
            if entry is None:
                return None
            client_id = history_client_id(entry)
        _, data = self._prepare(request, client_id or "")
        return JobRef(prompt_id, data)

    def poll_job(self, ref: JobRef) -> JobUpdate:
        """Look once at ``/history`` and ``/queue``: where is the prompt?"""
        watch = self._watch(ref)
        return self._after(watch, self._follower.poll(watch))

    def wait_job(self, ref: JobRef, timeout: float) -> JobUpdate:
        """Follow the prompt's WebSocket for up to ``timeout`` seconds; return at the first
        message that says it progressed or changed state (polling when the socket is quiet
        or gone)."""
        watch = self._watch(ref)
        return self._after(watch, self._follower.wait(watch, timeout))

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> Iterator[bytes]:
        """Stream the prompt's image (``output_index`` of :meth:`output_images`) from
        ``/view``, as chunks."""
        images = result.get("images")
        if not isinstance(images, list) or not images:
            images = self.output_images(ref.id)
        index = int(result.get("index", ref.data.get("output_index", 0)) or 0)
        if not -len(images) <= index < len(images):
            raise InvalidRequestError(
                f"prompt {ref.id} has {len(images)} images; there is no image {index}"
            )
        return self._api.view(images[index])

    def cancel_job(self, ref: JobRef) -> bool:
        """Delete the prompt from the queue if it waits there, interrupt it if it runs
        (the interrupt names our prompt id: ComfyUI ignores it unless ours is running);
        ``True`` if it stopped the prompt: a prompt that finished anyway (it started before
        the delete, or its last node ran on past the interrupt) gives ``False``. Nobody
        else's prompt is ever touched."""
        acted = False
        state = queue_state(self.retrying(self._api.queue), ref.id)
        if cancel_action(state) == "delete":
            self.retrying(self._api.delete_from_queue, ref.id)
            acted = True
            state = queue_state(self.retrying(self._api.queue), ref.id)  # started meanwhile?
        interrupted = cancel_action(state) == "interrupt"
        if interrupted:
            self.retrying(self._api.interrupt, ref.id)
            acted = True
        if acted:
            acted = self._settled_canceled(ref.id, wait=interrupted)
        if acted:
            self._forget(ref.id)
        return acted

    def _settled_canceled(self, prompt_id: str, *, wait: bool) -> bool:
        """Whether the prompt we deleted or interrupted is really stopped: its history says
        how it ended (an interrupted one is waited for up to ``CANCEL_SETTLE`` seconds)."""
        end = self.clock.monotonic() + (CANCEL_SETTLE if wait else 0.0)
        while True:
            outcome = canceled_by_us(self.retrying(self._api.history, prompt_id))
            if outcome is not None:
                return outcome
            if self.clock.monotonic() >= end:
                return True  # deleted (it never ran), or the interrupt is on its way
            self.clock.sleep(0.05)

    def job_for_id(self, image_id: str) -> ImageJob:
        """The job of prompt ``image_id``, found in ComfyUI's ``/history`` or ``/queue``."""
        entry = self.retrying(self._api.history, image_id)
        if entry is not None:
            item = entry.get("prompt")
            item = item if isinstance(item, list) else []
            workflow = item[2] if len(item) > 2 and isinstance(item[2], Mapping) else {}
            client_id = history_client_id(entry)
        else:
            state = queue_state(self.retrying(self._api.queue), image_id)
            if state.where is None:
                raise GeneratorError(
                    f"ComfyUI at {self._api.shown_url} has no prompt {image_id} in its queue "
                    "or history (unknown, deleted, or the server restarted)"
                )
            workflow, client_id = state.workflow or {}, state.client_id or ""
        found = read_request(workflow, self.template.targets, self.template.placeholders)
        request = ImageRequest(
            prompt=str(found.get("prompt") or ""),
            negative_prompt=str(found.get("negative_prompt") or ""),
            width=_int(found.get("width")),
            height=_int(found.get("height")),
            seed=_int(found.get("seed")),
        )
        data = {
            "client_id": client_id,
            "seed_used": self.template.has("seed"),
            "extra": {"workflow": self.template.name},
        }
        job = ImageJob(self, request, JobRef(image_id, data))
        job.refresh()
        return job

    # -- the async steps: each goes to the driver of the running loop (``_async``) -------

    def make_async_driver(self) -> AsyncComfyUI:
        """A new async driver (clients and socket) for the running event loop."""
        from ._async import AsyncComfyUI

        return AsyncComfyUI(self)

    # -- more for users ----------------------------------------------------------------------

    def output_images(self, image_id: str) -> list[dict[str, Any]]:
        """Every image prompt ``image_id`` made, ``{filename, subfolder, type, node}``, saved
        images (``type: output``) before previews. Raises if ComfyUI has no history of it."""
        entry = self.retrying(self._api.history, image_id)
        if entry is None:
            raise GeneratorError(
                f"ComfyUI at {self._api.shown_url} has no history for prompt {image_id} "
                "(unknown, not finished, or the server restarted)",
                generator=self.name,
            )
        return output_images(entry)

    def close(self) -> None:
        """Close the HTTP client and every WebSocket still open (jobs reconnect if waited)."""
        with self._lock:
            watches = list(self._watches.values())
            self._watches.clear()
        for watch in watches:
            self._follower.close(watch)
        self._api.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _submit(self, workflow: dict[str, Any], client_id: str, prompt_id: str) -> dict[str, Any]:
        try:
            return self._api.post_prompt(prompt_body(workflow, client_id, prompt_id))
        except PromptMaybeSubmitted as exc:
            # The request went out but the answer was lost (work="unknown"): the core looks
            # the prompt up by its id (find_job) before anything is sent again.
            raise exc.cause from exc

    def _sampler_choices(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The server's sampler and scheduler names (read once; ComfyUI 0.3.64's if the
        server cannot tell)."""
        with self._lock:
            if self._choices is not None:
                return self._choices
        choices = (DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS)
        try:
            # One try: the names are optional (the known list serves), so no backoff here.
            info = self._api.object_info("KSampler").get("KSampler", {})
            required = info.get("input", {}).get("required", {})
            samplers = required.get("sampler_name", [[]])[0]
            schedulers = required.get("scheduler", [[]])[0]
            if samplers and schedulers:
                choices = (tuple(map(str, samplers)), tuple(map(str, schedulers)))
        except (GeneratorError, AttributeError, IndexError, TypeError) as exc:
            log.debug("cannot read the server's samplers (%s); using the known list", exc)
            return choices
        with self._lock:
            self._choices = choices
        return choices

    def _new_watch(self, prompt_id: str, data: Mapping[str, Any]) -> Watch:
        class_types = {n: self.template.class_type(n) for n in self.template.nodes}
        tracker = PromptTracker(prompt_id, class_types, generator=self.name)
        return Watch(prompt_id, str(data.get("client_id") or ""), tracker, data)

    def _keep(self, watch: Watch) -> None:
        with self._lock:
            self._watches[watch.prompt_id] = watch
            self._watches.move_to_end(watch.prompt_id)
            open_ones = [w for w in self._watches.values() if w.socket is not None]
        for old in open_ones[: max(0, len(open_ones) - MAX_SOCKETS)]:
            self._follower.close(old)

    def _watch(self, ref: JobRef) -> Watch:
        """The watch of job ``ref``, made anew for a job submitted elsewhere."""
        with self._lock:
            watch = self._watches.get(ref.id)
        if watch is None:
            watch = self._new_watch(ref.id, ref.data)
            self._keep(watch)
        return watch

    def _after(self, watch: Watch, update: JobUpdate) -> JobUpdate:
        if update.status in TERMINAL:
            self._forget(watch.prompt_id)
        return update

    def _forget(self, prompt_id: str) -> None:
        with self._lock:
            watch = self._watches.pop(prompt_id, None)
        if watch is not None:
            self._follower.close(watch)


def _template(cfg: Mapping[str, Any]) -> WorkflowTemplate:
    """The workflow template the settings name (the built-in one by default)."""
    source = cfg["workflow_template"]
    if source is None or source == "":
        return WorkflowTemplate(
            builtin_workflow(), name="built-in", mapping=_mapping(cfg), builtin=True
        )
    if not isinstance(source, (str, Path, Mapping)):
        raise ConfigError(
            f"must be the path of an API-format workflow, got {type(source).__name__}",
            key="workflow_template",
        )
    workflow, name = load_workflow(source)
    return WorkflowTemplate(workflow, name=name, mapping=_mapping(cfg))


def _lora_extra(loras: list[tuple[str, float]]) -> dict[str, Any]:
    return {"loras": ", ".join(f"{n}:{w:g}" for n, w in loras)} if loras else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
