"""The generator's settings and one request's values, checked without I/O.

``check_*`` read the configuration (raising :class:`ConfigError` naming the key);
:func:`request_values` turns an :class:`~degrees37_imagegen.ImageRequest` into the values
a :class:`~._workflow.WorkflowTemplate` renders, and :func:`check_sampler` resolves and
checks sampler and scheduler names against the server's lists.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from degrees37_imagegen.errors import ConfigError, GeneratorError, InvalidRequestError
from degrees37_imagegen.request import ImageRequest

from ._samplers import resolve_sampler
from ._workflow import FIELDS, SETTING_FIELDS, WorkflowTemplate

__all__ = [
    "CALL_OPTIONS",
    "check_headers",
    "check_sampler",
    "check_seconds",
    "check_template_fields",
    "field_settings",
    "known_options",
    "request_extra",
    "request_values",
]

log = logging.getLogger("degrees37_imagegen_comfyui")

#: Options of a request that are not workflow fields.
CALL_OPTIONS = frozenset({"timeout", "output_index"})


def known_options(template: WorkflowTemplate) -> frozenset[str]:
    """The per-call options a generator with ``template`` uses: ``timeout`` and
    ``output_index``, the setting fields (``steps``...) and the template's own fields
    (``{{color}}``); the core warns about any other."""
    return CALL_OPTIONS | frozenset(SETTING_FIELDS) | frozenset(template.custom_fields)


def check_seconds(cfg: Mapping[str, Any], key: str) -> float:
    """A setting that must be a number of seconds above 0."""
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"must be a number of seconds, got {value!r}", key=key)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"must be more than 0 seconds, got {value!r}", key=key)
    return float(value)


def check_headers(cfg: Mapping[str, Any]) -> dict[str, str]:
    """The ``headers`` setting, with ``Authorization`` from ``api_key`` unless given."""
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


def field_settings(
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


def check_template_fields(
    template: WorkflowTemplate, settings: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Every setting has a place in ``template``, and every placeholder a value."""
    for key in SETTING_FIELDS:
        if settings.get(key) is not None and not template.has(key):
            raise ConfigError(
                f"is set, but the workflow template ({template.name}) has no place for "
                f"{key}: map it (mapping.{key}), use a {{{{{key}}}}} placeholder, or "
                "remove the setting",
                key=key,
            )
    for key in sorted(template.placeholder_fields & set(SETTING_FIELDS)):
        if settings.get(key) is None:
            raise ConfigError(
                f"the workflow template uses {{{{{key}}}}}, so {key} must be set", key=key
            )
    unused = sorted(set(values) - template.custom_fields)
    if unused:
        raise ConfigError(
            f"the workflow template has no field {', '.join(map(repr, unused))} "
            f"(its own fields: {', '.join(sorted(template.custom_fields)) or 'none'})",
            key="values",
        )


def request_values(
    template: WorkflowTemplate,
    request: ImageRequest,
    settings: Mapping[str, Any],
    values: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(values, overrides)``: every field's value for ``request``, and the setting fields
    its options override. Raises :class:`InvalidRequestError` for a bad option or a
    placeholder without a value."""
    options = request.options
    out: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or "",
        "width": request.width,
        "height": request.height,
        "seed": request.seed,
    }
    overrides = field_settings(
        {k: options.get(k) for k in SETTING_FIELDS}, error=InvalidRequestError
    )
    for key in SETTING_FIELDS:
        value = overrides.get(key)
        if value is not None and not template.has(key):
            raise InvalidRequestError(
                f"the workflow template ({template.name}) has no place for {key}"
            )
        out[key] = value if value is not None else settings.get(key)
    custom = {k: options[k] for k in template.custom_fields if options.get(k) is not None}
    out.update({**values, **custom})
    missing = template.missing(out)
    if missing:
        raise InvalidRequestError(
            "the workflow template needs a value for "
            + ", ".join(missing)
            + ": pass it as a keyword argument or set it under 'values'"
        )
    return out, overrides


def check_sampler(
    values: dict[str, Any],
    samplers: Sequence[str],
    schedulers: Sequence[str],
    *,
    explicit_scheduler: bool,
    has_scheduler: bool,
) -> None:
    """Resolve ``values["sampler"]`` to the server's name (a ``_karras`` suffix may set the
    scheduler too, unless one was given) and check the scheduler; in place."""
    if values.get("sampler") is not None:
        try:
            sampler, scheduler = resolve_sampler(str(values["sampler"]), samplers)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        values["sampler"] = sampler
        if scheduler and not explicit_scheduler and has_scheduler:
            values["scheduler"] = scheduler
    name = values.get("scheduler")
    if name is not None and name not in schedulers:
        raise InvalidRequestError(
            f"unknown scheduler {name!r}; valid schedulers: " + ", ".join(schedulers)
        )


def request_extra(template: WorkflowTemplate, values: Mapping[str, Any]) -> dict[str, Any]:
    """What goes into an image's metadata besides the request: the workflow's name, the
    sampler settings it has a place for, and its own fields."""
    extra: dict[str, Any] = {"workflow": template.name}
    for key in ("steps", "cfg", "sampler", "scheduler"):
        if template.has(key) and values.get(key) is not None:
            extra[key] = values[key]
    for key in sorted(template.custom_fields):
        extra[key] = values.get(key)
    return extra


def output_index(options: Mapping[str, Any]) -> int:
    """The ``output_index`` option: which of a prompt's images to fetch (0: the first)."""
    index = options.get("output_index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise InvalidRequestError(f"output_index must be a whole number, got {index!r}")
    return index


def check_timeout_option(options: Mapping[str, Any]) -> None:
    """A ``timeout`` option is checked but not used: the ``timeout`` setting bounds jobs."""
    timeout = options.get("timeout")
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidRequestError(f"timeout must be a number of seconds above 0, got {timeout!r}")
    log.warning(
        "a per-image timeout is not supported any more; the timeout setting applies "
        "(or wait with job.wait(timeout=...))"
    )
