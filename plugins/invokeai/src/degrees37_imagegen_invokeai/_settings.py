"""The generator's settings: defaults and checks (no network here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from degrees37_imagegen.errors import ConfigError, GeneratorError, InvalidRequestError

from ._templates import GraphTemplate, TemplateError

__all__ = [
    "DEFAULT_SETTINGS",
    "FALLBACK_CFG_SCALE",
    "FALLBACK_SCHEDULER",
    "FALLBACK_STEPS",
    "MODEL_FIELDS",
    "SCHEDULERS",
    "check_sampling",
    "validate_settings",
]

#: Every known setting and its default (see docs/generators/invokeai.md).
DEFAULT_SETTINGS: Mapping[str, Any] = {
    "base_url": "http://localhost:9090",
    "default_model": None,
    "board_name": None,
    "max_wait": 600.0,
    "timeout": 30.0,
    "steps": None,
    "cfg_scale": None,
    "scheduler": None,
    "style_preset": None,
    "token": None,
    "graph_template": None,
    "graph_output_node": None,
    "map_sdxl_resolution": True,
    "keep_native_size": False,
    "retries": 3,
    "poll_interval": 0.1,
    "events": True,
    "loras": None,
}

#: The schedulers InvokeAI 6 accepts (``SCHEDULER_NAME_VALUES``).
SCHEDULERS = (
    "ddim", "ddpm", "deis", "deis_k", "lms", "lms_k", "pndm", "heun", "heun_k", "euler",
    "euler_k", "euler_a", "kdpm_2", "kdpm_2_k", "kdpm_2_a", "kdpm_2_a_k", "dpmpp_2s",
    "dpmpp_2s_k", "dpmpp_2m", "dpmpp_2m_k", "dpmpp_2m_sde", "dpmpp_2m_sde_k", "dpmpp_3m",
    "dpmpp_3m_k", "dpmpp_sde", "dpmpp_sde_k", "er_sde", "unipc", "unipc_k", "lcm", "tcd",
)  # fmt: skip

#: Used when neither the settings nor the model's own default settings say otherwise
#: (the web UI's values in the captured SDXL request).
FALLBACK_STEPS = 30
FALLBACK_CFG_SCALE = 7.5
FALLBACK_SCHEDULER = "dpmpp_2m_k"

#: The fields by which a graph names a model.
MODEL_FIELDS = ("key", "hash", "name", "base", "type")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_settings(cfg: dict[str, Any]) -> GraphTemplate | None:
    """Check (and normalise) the settings in ``cfg``; return the loaded graph template.

    Raises :class:`ConfigError` naming the bad setting.
    """
    base_url = cfg["base_url"]
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError("must be the URL of the InvokeAI server", key="base_url")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"must be an http(s) URL such as http://localhost:9090, got {base_url!r}",
            key="base_url",
        )
    if "/api/" in parts.path + "/":
        raise ConfigError(
            "must be the server's root (e.g. http://localhost:9090), without /api/...",
            key="base_url",
        )
    cfg["base_url"] = base_url.strip().rstrip("/")
    for key in ("max_wait", "timeout", "poll_interval"):
        if not _is_number(cfg[key]) or cfg[key] <= 0:
            raise ConfigError(f"must be a positive number of seconds, got {cfg[key]!r}", key=key)
    retries = cfg["retries"]
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigError(f"must be a whole number, 0 or more, got {retries!r}", key="retries")
    for key in ("map_sdxl_resolution", "keep_native_size", "events"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"must be true or false, got {cfg[key]!r}", key=key)
    # An empty value means "not set", as ${VAR:-} gives when VAR is unset.
    for key in ("board_name", "style_preset", "token", "graph_output_node", "default_model"):
        value = cfg[key]
        if isinstance(value, str) and not value.strip():
            cfg[key] = None
        elif value is not None and not isinstance(value, str) and key != "default_model":
            raise ConfigError(f"must be text, got {value!r}", key=key)
    if cfg["graph_template"] == "":
        cfg["graph_template"] = None
    _check_model_spec(cfg["default_model"])
    check_sampling(cfg["steps"], cfg["cfg_scale"], cfg["scheduler"], config=True)
    template = cfg["graph_template"]
    if template is None:
        if cfg["graph_output_node"] is not None:
            raise ConfigError("only makes sense with graph_template", key="graph_output_node")
        return None
    try:
        return GraphTemplate.load(template, cfg["graph_output_node"])
    except TemplateError as exc:
        raise ConfigError(str(exc), key="graph_template") from exc


def _check_model_spec(spec: Any) -> None:
    if spec is None or isinstance(spec, str):
        return
    if isinstance(spec, Mapping):
        missing = [f for f in MODEL_FIELDS if not isinstance(spec.get(f), str) or not spec.get(f)]
        if missing:
            raise ConfigError(
                f"a model identifier needs {', '.join(MODEL_FIELDS)}; missing or not text: "
                + ", ".join(missing),
                key="default_model",
            )
        return
    raise ConfigError(
        f"must be a model key or name, or a {{key, hash, name, base, type}} mapping, got {spec!r}",
        key="default_model",
    )


def check_sampling(
    steps: Any, cfg_scale: Any, scheduler: Any, *, config: bool
) -> tuple[int | None, float | None, str | None]:
    """Check ``steps``, ``cfg_scale`` and ``scheduler`` (each may be ``None``).

    Raises :class:`ConfigError` when ``config`` (they come from the settings), else
    :class:`InvalidRequestError` (they were passed to one call).
    """

    def fail(problem: str, key: str) -> GeneratorError:
        if config:
            return ConfigError(problem, key=key)
        return InvalidRequestError(f"{key}: {problem}")

    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0):
        raise fail(f"must be a whole number above 0, got {steps!r}", "steps")
    if cfg_scale is not None and (not _is_number(cfg_scale) or cfg_scale < 1):
        raise fail(f"must be a number, 1 or more, got {cfg_scale!r}", "cfg_scale")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise fail(
            f"unknown scheduler {scheduler!r}; InvokeAI's: {', '.join(SCHEDULERS)}", "scheduler"
        )
    return steps, (float(cfg_scale) if cfg_scale is not None else None), scheduler
