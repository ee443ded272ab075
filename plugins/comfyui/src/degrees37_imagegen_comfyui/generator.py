"""The ComfyUI generator: drives any API-format workflow by prompt, size and seed."""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from websockets.sync.client import ClientConnection, connect

from degrees37_imagegen.base import BaseImageGenerator, ImageInfo
from degrees37_imagegen.errors import (
    ConfigError,
    GeneratorError,
    InvalidRequestError,
)
from degrees37_imagegen.files import write_image_atomically
from degrees37_imagegen.progress import Progress, ProgressCallback
from degrees37_imagegen.redaction import RedactingLogger

from ._api import ComfyUIAPI, PromptMaybeSubmitted, parse_server_address
from ._errors import ComfyUITimeoutError
from ._monitor import DeadlineReached, PromptTracker, PromptWatcher
from ._samplers import DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS, resolve_sampler
from ._workflow import (
    BUILTIN_DEFAULTS,
    FIELDS,
    SETTING_FIELDS,
    WorkflowTemplate,
    builtin_workflow,
    load_workflow,
)

__all__ = ["ComfyUIGenerator"]

log = logging.getLogger("degrees37_imagegen_comfyui")

# Keyword arguments of generate_image that are not workflow fields.
_CALL_KWARGS = frozenset({"on_progress", "timeout"})


class ComfyUIGenerator(BaseImageGenerator):
    """Makes images with a ComfyUI server by filling in an API-format workflow.

    Without ``workflow_template`` it uses ComfyUI's standard text-to-image workflow
    (checkpoint, two text encoders, empty latent, KSampler, VAE decode, save). Where the
    prompt, size, seed and the other fields go in a template is found from the ``mapping``
    setting, ``{{placeholders}}``, node titles, or the standard graph (see the docs), and
    checked when the generator is created.

    Each :meth:`generate_image` call opens its own WebSocket with its own client id before
    it submits, so calls from several threads (and several generators on one server) never
    see each other's messages. It returns the prompt id, which :meth:`download_image` takes.
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
    }
    secret_settings: ClassVar[frozenset[str]] = frozenset({"headers", "api_key"})
    path_settings: ClassVar[frozenset[str]] = frozenset({"workflow_template"})
    server_setting: ClassVar[str | None] = "server_address"

    # -- configuration -------------------------------------------------------------------

    def validate_config(self) -> None:
        """Check every setting and the workflow mapping; no network is used."""
        cfg = self.config
        self.http_url, self.ws_url = parse_server_address(str(cfg["server_address"] or ""))
        self.timeout = _positive(cfg, "timeout")
        self.request_timeout = _positive(cfg, "request_timeout")
        self.connect_timeout = _positive(cfg, "connect_timeout")
        self.poll_interval = _positive(cfg, "poll_interval")
        self._headers = _headers(cfg)
        if not isinstance(cfg["verify_ssl"], bool):
            raise ConfigError(f"must be true or false, got {cfg['verify_ssl']!r}", key="verify_ssl")
        self._settings = _field_settings(cfg)
        values = cfg["values"]
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError("must map field names to values", key="values")
        self._values: dict[str, Any] = dict(values or {})

        mapping = cfg["mapping"]
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ConfigError("must map field names to targets", key="mapping")
        source = cfg["workflow_template"]
        if source is None or source == "":
            workflow, name, builtin = builtin_workflow(), "built-in", True
        elif isinstance(source, (str, Path, Mapping)):
            workflow, name = load_workflow(source)
            builtin = False
        else:
            raise ConfigError(
                f"must be the path of an API-format workflow, got {type(source).__name__}",
                key="workflow_template",
            )
        self.template = WorkflowTemplate(workflow, name=name, mapping=mapping, builtin=builtin)
        if builtin:
            for key, value in BUILTIN_DEFAULTS.items():
                if self._settings.get(key) is None:
                    self._settings[key] = value
        self._check_template_fields()

        self._api = ComfyUIAPI(
            self.http_url,
            headers=self._headers,
            timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
            verify=bool(cfg["verify_ssl"]),
            generator=self.name,
        )
        self._lock = threading.Lock()
        self._choices: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._closing = threading.Event()
        self._sockets: set[ClientConnection] = set()

    def _check_template_fields(self) -> None:
        template = self.template
        for key in SETTING_FIELDS:
            if self._settings.get(key) is not None and not template.has(key):
                raise ConfigError(
                    f"is set, but the workflow template ({template.name}) has no place for "
                    f"{key}: map it (mapping.{key}), use a {{{{{key}}}}} placeholder, or "
                    "remove the setting",
                    key=key,
                )
        for key in sorted(template.placeholder_fields & set(SETTING_FIELDS)):
            if self._settings.get(key) is None:
                raise ConfigError(
                    f"the workflow template uses {{{{{key}}}}}, so {key} must be set",
                    key=key,
                )
        unused = sorted(set(self._values) - template.custom_fields)
        if unused:
            raise ConfigError(
                f"the workflow template has no field {', '.join(map(repr, unused))} "
                f"(its own fields: {', '.join(sorted(template.custom_fields)) or 'none'})",
                key="values",
            )
        ignored = [f for f in ("prompt", "seed", "width", "height") if not template.has(f)]
        if ignored:
            log.info(
                "generator %r: the workflow template (%s) has no place for %s; those "
                "request values are ignored",
                self.name,
                template.name,
                ", ".join(ignored),
            )

    # -- the generator interface ---------------------------------------------------------

    def test_connection(self) -> bool:
        """Whether ComfyUI answers ``/system_stats``."""
        try:
            return "system" in self._api.system_stats()
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
                    f"{width}x{height} is too small: this workflow needs at least 16x16",
                    generator=self.name,
                )
            return width - width % 8, height - height % 8
        return width, height

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        """Queue the workflow with these values, wait until ComfyUI has run it, and return
        its prompt id (the image id for :meth:`download_image`).

        ``on_progress`` gets :class:`~degrees37_imagegen.Progress` reports; ``steps``,
        ``cfg``, ``sampler``, ``scheduler``, ``checkpoint`` and the template's own fields
        may be given to override the settings for this image; ``timeout`` overrides the
        setting. The time counts from submission; when it runs out the prompt is removed
        from the queue (or interrupted if it is running) and
        :class:`~degrees37_imagegen_comfyui.ComfyUITimeoutError` is raised.
        """
        on_progress: ProgressCallback | None = kwargs.get("on_progress")
        timeout = kwargs.get("timeout") or self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidRequestError(
                f"timeout must be a number of seconds above 0, got {timeout!r}",
                generator=self.name,
            )
        report = self._reporter(on_progress)
        generated = self.validate_dimensions(width, height)
        used_seed = self.resolve_seed(seed)
        values = self._values_for(prompt, negative_prompt, width, height, used_seed, kwargs)
        workflow = self.template.render(values)

        client_id = uuid.uuid4().hex
        prompt_id = str(uuid.uuid4())
        opened: list[ClientConnection] = []

        def reconnect() -> ClientConnection:
            socket = self._connect_socket(client_id)
            opened.append(socket)
            return socket

        socket = self._open_socket(client_id)
        try:
            answer = self._submit(workflow, client_id, prompt_id)
            prompt_id = str(answer["prompt_id"])
            submitted = time.monotonic()
            number = answer.get("number")
            report(
                Progress("submitted", f"prompt {prompt_id} queued (#{number})", generator=self.name)
            )
            if answer.get("node_errors"):
                log.warning(
                    "ComfyUI queued prompt %s but reported errors for some outputs: %s",
                    prompt_id,
                    answer["node_errors"],
                )
            tracker = PromptTracker(
                prompt_id,
                {n: self.template.class_type(n) for n in workflow},
                generator=self.name,
            )
            watcher = PromptWatcher(
                self._api,
                tracker,
                socket=socket,
                connect=reconnect,
                deadline=submitted + timeout,
                poll_interval=self.poll_interval,
                report=report,
                closing=self._closing,
            )
            try:
                watcher.run()
                if tracker.error is not None:
                    raise tracker.error
                images = self._finished_images(prompt_id, submitted + timeout)
            except DeadlineReached:
                images = self._on_timeout(prompt_id, timeout)
        finally:
            for each in [socket, *opened]:  # the first socket and any reconnected ones
                self._close_socket(each)

        self.record_image(
            ImageInfo(
                image_id=prompt_id,
                generator=self.name,
                prompt=prompt,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                seed=used_seed,
                model=values.get("checkpoint") if self.template.has("checkpoint") else None,
                generated_width=generated[0] if generated != (width, height) else None,
                generated_height=generated[1] if generated != (width, height) else None,
                extra=self._extra(prompt_id, values, tracker, len(images)),
            )
        )
        return prompt_id

    def download_image(self, image_id: str, output_path: str | Path, *, index: int = 0) -> bool:
        """Fetch image ``index`` (default: the first) of prompt ``image_id`` from
        ``/history`` and ``/view``, stream it to a temporary file, check that it is a whole
        image and move it to ``output_path``."""
        images = self.output_images(image_id)
        if not images:
            raise GeneratorError(
                f"ComfyUI prompt {image_id} has no output image", generator=self.name
            )
        if not -len(images) <= index < len(images):
            raise InvalidRequestError(
                f"prompt {image_id} has {len(images)} images; there is no image {index}",
                generator=self.name,
            )
        with self._api.view(images[index]) as chunks:
            write_image_atomically(output_path, chunks)
        return True

    def output_images(self, image_id: str) -> list[dict[str, Any]]:
        """Every image prompt ``image_id`` made, ``{filename, subfolder, type, node}``, saved
        images (``type: output``) before previews. Raises if ComfyUI has no history of it."""
        entry = self._api.history(image_id)
        if entry is None:
            raise GeneratorError(
                f"ComfyUI at {self._api.shown_url} has no history for prompt {image_id} "
                "(unknown, not finished, or the server restarted)",
                generator=self.name,
            )
        return _images(entry)

    def close(self) -> None:
        """Close the HTTP client and any WebSocket still open."""
        self._closing.set()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for socket in sockets:
            self._close_socket(socket)
        self._api.close()
        self._closing.clear()

    # -- steps of generate_image ---------------------------------------------------------

    def _reporter(self, on_progress: ProgressCallback | None) -> ProgressCallback:
        def report(progress: Progress) -> None:
            if on_progress is None:
                return
            try:
                on_progress(progress)
            except Exception:  # a broken progress display must not break the image
                log.warning("progress callback failed", exc_info=True)

        return report

    def _values_for(
        self,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        seed: int,
        kwargs: Mapping[str, Any],
    ) -> dict[str, Any]:
        template = self.template
        values: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": negative_prompt or "",
            "width": width,
            "height": height,
            "seed": seed,
        }
        overrides = _field_settings(
            {k: kwargs.get(k) for k in SETTING_FIELDS}, error=InvalidRequestError
        )
        for key in SETTING_FIELDS:
            value = overrides.get(key)
            if value is not None and not template.has(key):
                raise InvalidRequestError(
                    f"the workflow template ({template.name}) has no place for {key}",
                    generator=self.name,
                )
            values[key] = value if value is not None else self._settings.get(key)
        custom = {k: kwargs[k] for k in template.custom_fields if kwargs.get(k) is not None}
        values.update({**self._values, **custom})
        unknown = sorted(set(kwargs) - set(values) - _CALL_KWARGS - set(SETTING_FIELDS))
        if unknown:
            log.debug("generate_image: ignoring %s", ", ".join(unknown))
        missing = template.missing(values)
        if missing:
            raise InvalidRequestError(
                "the workflow template needs a value for "
                + ", ".join(missing)
                + ": pass it as a keyword argument or set it under 'values'",
                generator=self.name,
            )
        if template.has("sampler") or template.has("scheduler"):
            explicit = overrides["scheduler"] is not None or self.config["scheduler"] is not None
            self._check_sampler(values, explicit_scheduler=explicit)
        return values

    def _check_sampler(self, values: dict[str, Any], *, explicit_scheduler: bool) -> None:
        samplers, schedulers = self._sampler_choices()
        if values.get("sampler") is not None:
            try:
                sampler, scheduler = resolve_sampler(str(values["sampler"]), samplers)
            except ValueError as exc:
                raise InvalidRequestError(str(exc), generator=self.name) from None
            values["sampler"] = sampler
            if scheduler and not explicit_scheduler and self.template.has("scheduler"):
                values["scheduler"] = scheduler
        scheduler_name = values.get("scheduler")
        if scheduler_name is not None and scheduler_name not in schedulers:
            raise InvalidRequestError(
                f"unknown scheduler {scheduler_name!r}; valid schedulers: " + ", ".join(schedulers),
                generator=self.name,
            )

    def _sampler_choices(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The server's sampler and scheduler names (read once; ComfyUI 0.3.64's if the
        server cannot tell)."""
        with self._lock:
            if self._choices is not None:
                return self._choices
        choices = (DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS)
        try:
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

    def _connect_socket(self, client_id: str) -> ClientConnection:
        """Open a WebSocket as ``client_id`` (raises when it cannot)."""
        url = f"{self.ws_url}?clientId={client_id}"
        ssl_context: ssl.SSLContext | None = None
        if url.startswith("wss:"):
            ssl_context = ssl.create_default_context()
            if not self.config["verify_ssl"]:
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
        socket = connect(
            url,
            ssl=ssl_context,
            additional_headers=self._headers or None,
            open_timeout=self.connect_timeout,
            close_timeout=2,
            max_size=64 * 2**20,
            # websockets logs every handshake header at DEBUG: hide the auth headers first.
            logger=RedactingLogger(logging.getLogger("websockets.client"), self._headers),
        )
        # websockets >= 17.1 warns about a connection not used as a context manager; it
        # outlives any one block here (the watcher may replace it), and every path closes it.
        socket.__enter__()
        with self._lock:
            self._sockets.add(socket)
        return socket

    def _open_socket(self, client_id: str) -> ClientConnection | None:
        """Open a WebSocket as ``client_id``, or return ``None`` (and poll) if we cannot."""
        try:
            return self._connect_socket(client_id)
        except Exception as exc:  # no socket is not fatal: polling is the source of truth
            # The URL (and so the exception's text) may hold a password: only the type.
            log.warning(
                "cannot open ComfyUI's WebSocket at %s (%s); following the prompt by "
                "polling instead",
                self._api.shown_url,
                type(exc).__name__,
            )
            return None

    def _close_socket(self, socket: ClientConnection | None) -> None:
        if socket is None:
            return
        with self._lock:
            self._sockets.discard(socket)
        try:
            socket.close()
        except Exception:  # it may be broken already; it is closed either way
            log.debug("closing a WebSocket failed", exc_info=True)

    def _submit(self, workflow: dict[str, Any], client_id: str, prompt_id: str) -> dict[str, Any]:
        try:
            return self._api.post_prompt(workflow, client_id, prompt_id)
        except PromptMaybeSubmitted as exc:
            # The request went out but the answer was lost: find it rather than resubmit.
            log.warning("POST /prompt failed after sending (%s); looking for %s", exc, prompt_id)
            try:
                running, pending = self._api.queue()
                queued = any(len(i) > 1 and i[1] == prompt_id for i in running + pending)
                if queued or self._api.history(prompt_id) is not None:
                    return {"prompt_id": prompt_id, "number": None, "node_errors": {}}
            except GeneratorError:
                pass
            raise exc.cause from exc

    def _finished_images(self, prompt_id: str, deadline: float) -> list[dict[str, Any]]:
        wait = 0.05
        while True:
            entry = self._api.history(prompt_id)
            if entry is not None:
                break
            # History is written before the final message, so this is only a safety net.
            if time.monotonic() + wait > deadline:
                raise DeadlineReached
            time.sleep(wait)
            wait = min(wait * 2, 1.0)
        tracker = PromptTracker(prompt_id, {}, generator=self.name)
        tracker.handle_history(entry)
        if tracker.error is not None:
            raise tracker.error
        images = _images(entry)
        if not images:
            raise GeneratorError(
                f"ComfyUI ran prompt {prompt_id}, but the workflow made no image (does it "
                "end in a SaveImage or PreviewImage node?)",
                generator=self.name,
            )
        return images

    def _on_timeout(self, prompt_id: str, timeout: float) -> list[dict[str, Any]]:
        """Cancel our own prompt (only ours) and raise; return its images if it has just
        finished after all."""
        state, action = "unknown", "none"
        try:
            running, pending = self._api.queue()
            if any(len(i) > 1 and i[1] == prompt_id for i in pending):
                state = "pending"
                self._api.delete_from_queue(prompt_id)
                action = "deleted"
                running, pending = self._api.queue()  # it may have started meanwhile
            if any(len(i) > 1 and i[1] == prompt_id for i in running):
                state = "running"
                self._api.interrupt(prompt_id)  # targeted: a no-op unless ours is running
                action = "interrupted"
            elif state == "unknown":
                entry = self._api.history(prompt_id)
                if entry is not None:
                    tracker = PromptTracker(prompt_id, {}, generator=self.name)
                    tracker.handle_history(entry)
                    if tracker.error is None and _images(entry):
                        return _images(entry)
                    state = "finished"
        except GeneratorError as exc:
            log.warning("could not cancel prompt %s after its timeout: %s", prompt_id, exc)
        raise ComfyUITimeoutError(prompt_id, timeout, state, action, generator=self.name)

    def _extra(
        self, prompt_id: str, values: Mapping[str, Any], tracker: PromptTracker, count: int
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {"prompt_id": prompt_id, "workflow": self.template.name}
        for key in ("steps", "cfg", "sampler", "scheduler"):
            if self.template.has(key) and values.get(key) is not None:
                extra[key] = values[key]
        for key in sorted(self.template.custom_fields):
            extra[key] = values.get(key)
        if count > 1:
            extra["images"] = count
        if tracker.cached and set(tracker.cached) >= set(self.template.nodes):
            extra["cached"] = True
        return extra


# -- helpers ------------------------------------------------------------------------------


def _images(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The images of a history entry: saved ones (``type: output``) first, then previews."""
    outputs = entry.get("outputs")
    found: list[dict[str, Any]] = []
    if isinstance(outputs, Mapping):
        for node_id, output in outputs.items():
            images = output.get("images") if isinstance(output, Mapping) else None
            for image in images if isinstance(images, list) else []:
                if isinstance(image, Mapping) and image.get("filename"):
                    found.append({**image, "node": str(node_id)})
    return sorted(found, key=lambda image: image.get("type") != "output")


def _positive(cfg: Mapping[str, Any], key: str) -> float:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"must be a number of seconds, got {value!r}", key=key)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"must be more than 0 seconds, got {value!r}", key=key)
    return float(value)


def _headers(cfg: Mapping[str, Any]) -> dict[str, str]:
    headers = cfg["headers"]
    if headers is None:
        headers = {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) for k, v in headers.items()
    ):
        raise ConfigError("must map header names to text values", key="headers")
    out = {k: str(v) for k, v in headers.items()}
    api_key = cfg["api_key"]
    if api_key:
        if not isinstance(api_key, str):
            raise ConfigError("must be text", key="api_key")
        out.setdefault("Authorization", f"Bearer {api_key}")
    return out


def _field_settings(
    cfg: Mapping[str, Any], error: type[GeneratorError] = ConfigError
) -> dict[str, Any]:
    """Check steps, cfg, sampler, scheduler and checkpoint (``None`` means not set)."""

    def fail(key: str, problem: str) -> GeneratorError:
        if error is ConfigError:
            return ConfigError(problem, key=key)
        return error(f"{key} {problem}")

    out: dict[str, Any] = {}
    for key in SETTING_FIELDS:
        value = cfg.get(key)
        if value is None:
            out[key] = None
            continue
        kind = FIELDS[key]
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fail(key, f"must be a whole number of at least 1, got {value!r}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise fail(key, f"must be a number of at least 0, got {value!r}")
            value = float(value)
        elif not isinstance(value, str) or not value.strip():
            raise fail(key, f"must be a name, got {value!r}")
        out[key] = value
    return out
