"""The :class:`GeneratorRegistry`: installed plugins plus configuration give generators."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import BaseImageGenerator, UnknownSettingWarning
from .config import GeneratorsConfig, find_config, load_config
from .errors import ConfigError, GeneratorError, GeneratorNotFoundError, PluginError
from .hookspecs import GeneratorTarget
from .plugins import (
    PluginInfo,
    Registration,
    call_register,
    discover_plugins,
    new_plugin_manager,
)

__all__ = ["TESTING_ENV", "GeneratorRegistry", "PluginUnavailableError"]

#: ``TESTING=true`` selects the mock generator whenever no generator is named.
TESTING_ENV = "TESTING"

_ENTRY_REF_KEYS = ("plugin", "class")

#: Distribution to suggest when a configured plugin is missing.
_INSTALL_HINTS = {
    "mock": "degrees37-imagegen[mock]",
    "invokeai": "degrees37-imagegen[invokeai]",
    "comfyui": "degrees37-imagegen[comfyui]",
}


class PluginUnavailableError(GeneratorNotFoundError):
    """The name belongs to an installed plugin that failed to load or is disabled.

    ``plugin`` is that plugin's :class:`PluginInfo` (its ``status`` and ``error`` say why).
    """

    def __init__(self, name: str, plugin: PluginInfo, available: list[str]) -> None:
        super().__init__(name, available)
        self.plugin = plugin
        self.message = unavailable_reason(plugin)
        self.args = (self.message,)


def unavailable_reason(plugin: PluginInfo) -> str:
    """Why an installed plugin gives no generators, in one line."""
    label = f"generator plugin {plugin.name!r}"
    if plugin.distribution:
        label += f" ({plugin.distribution} {plugin.version or ''}".rstrip() + ")"
    if plugin.status == "disabled":
        return f"{label} is installed but disabled by $IMAGEGEN_PLUGINS"
    return f"{label} is installed but failed to load: {plugin.error or 'unknown error'}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class GeneratorRegistry:
    """Knows every installed generator plugin and the configured generator entries.

    ``GeneratorRegistry()`` discovers installed plugins the first time it needs them and
    reads the configuration from the usual places (see :mod:`degrees37_imagegen.config`)
    unless ``config`` (a path, a :class:`GeneratorsConfig` or a plain mapping) is given.
    ``discover=False`` skips entry points, leaving only what is :meth:`register`-ed.
    """

    def __init__(
        self,
        config: str | Path | GeneratorsConfig | Mapping[str, Any] | None = None,
        *,
        discover: bool = True,
        strict: bool | None = None,
    ) -> None:
        self._config: GeneratorsConfig | None = None
        if isinstance(config, GeneratorsConfig):
            self._config = config
        elif isinstance(config, Mapping):
            self._config = GeneratorsConfig(
                generators={k: dict(v or {}) for k, v in config.get("generators", {}).items()},
                default_generator=config.get("default_generator"),
                origin="mapping",
            )
        elif config is not None:
            self._config = load_config(config, origin="argument")
        self._registrations: dict[str, Registration] = {}
        self._manual: set[str] = set()
        self._plugins: list[PluginInfo] = []
        self._discover = discover
        self._discovered = False
        self._strict = strict
        self._lock = threading.RLock()
        self._pm = new_plugin_manager()

    # -- configuration -------------------------------------------------------------------

    @property
    def config(self) -> GeneratorsConfig:
        """The configuration in use (found in the usual places on first use)."""
        if self._config is None:
            self._config = find_config()
        return self._config

    def load_config(self, path: str | Path) -> GeneratorsConfig:
        """Read the configuration file at ``path`` and use it from now on."""
        self._config = load_config(path, origin="load_config")
        return self._config

    # -- plugins and registrations -------------------------------------------------------

    def _ensure_discovered(self) -> None:
        with self._lock:
            if self._discovered or not self._discover:
                return
            self._discovered = True
            self._plugins = discover_plugins(self._pm, self._add_discovered, strict=self._strict)

    def _add_discovered(self, name: str, target: GeneratorTarget, info: PluginInfo) -> None:
        if name in self._manual:
            return
        existing = self._registrations.get(name)
        if existing is not None and existing.plugin is not None:
            warnings.warn(
                f"generator name {name!r} is registered by both plugin "
                f"{existing.plugin.name!r} and {info.name!r}; using {existing.plugin.name!r}",
                UserWarning,
                stacklevel=3,
            )
            return
        self._registrations[name] = Registration(name, target, info)

    def register(self, name: str, cls: GeneratorTarget) -> None:
        """Register generator class ``cls`` (or a lazy ``"module:Class"`` path) as ``name``.

        A name registered here takes precedence over an installed plugin's. Raises
        :class:`TypeError` when ``cls`` is not a :class:`BaseImageGenerator` subclass.
        """
        if not isinstance(cls, str) and not (
            isinstance(cls, type) and issubclass(cls, BaseImageGenerator)
        ):
            raise TypeError(f"{cls!r} is not a BaseImageGenerator subclass")
        if not isinstance(name, str) or not name:
            raise TypeError(f"generator name must be a non-empty string, got {name!r}")
        with self._lock:
            self._registrations[name] = Registration(name, cls)
            self._manual.add(name)

    def register_plugin(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register an in-process plugin object (a module or any object with hook impls)."""
        self._ensure_discovered()
        plugin_name = name or str(getattr(plugin, "__name__", type(plugin).__name__))
        info = PluginInfo(name=plugin_name, target=repr(plugin))
        self._pm.register(plugin, name=plugin_name)
        call_register(self._pm, plugin, info, self._add_discovered)
        self._plugins.append(info)
        return info

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every installed plugin, with its status (``ok``, ``broken``, ``disabled``)."""
        self._ensure_discovered()
        return list(self._plugins)

    def registered_names(self) -> list[str]:
        """The names of all registered generator classes (plugins and :meth:`register`)."""
        self._ensure_discovered()
        return sorted(self._registrations)

    def generator_names(self) -> list[str]:
        """Every name :meth:`get_generator` accepts: configured entries and registered names."""
        return sorted(set(self.config.generators) | set(self.registered_names()))

    # -- choosing and making generators --------------------------------------------------

    def default_name(self) -> str:
        """The generator used when none is named: ``mock`` under ``TESTING=true``, else the
        configuration's ``default_generator``, else ``mock``."""
        if _truthy(os.environ.get(TESTING_ENV)):
            return "mock"
        return self.config.default_generator or "mock"

    def unavailable_plugin(self, name: str) -> PluginInfo | None:
        """The installed plugin called ``name`` (entry point or distribution) when it is
        broken or disabled, else ``None``."""
        self._ensure_discovered()
        for info in self._plugins:
            if info.status != "ok" and name in (info.name, info.distribution):
                return info
        return None

    def _find_registration(self, ref: str) -> Registration | None:
        self._ensure_discovered()
        if ref in self._registrations:
            return self._registrations[ref]
        for reg in self._registrations.values():
            if reg.class_name == ref:
                return reg
        return None

    def resolve(self, name: str | None = None) -> tuple[str, Registration, dict[str, Any]]:
        """Which entry, plugin and settings ``name`` stands for, without creating anything."""
        cfg = self.config
        explicit = name is not None
        name = name if name is not None else self.default_name()
        entry = cfg.entry(name)
        if entry is None:
            self._ensure_discovered()
            reg = self._registrations.get(name)  # a bare name is a registered name, not a class
            if reg is None:
                if not explicit and name == cfg.default_generator:
                    raise cfg.error(
                        f"{name!r} is neither a configured generator nor an installed plugin "
                        f"(available: {', '.join(self.generator_names()) or 'none'})",
                        "default_generator",
                    )
                broken = self.unavailable_plugin(name)
                if broken is not None:
                    raise PluginUnavailableError(name, broken, self.generator_names())
                extra = _INSTALL_HINTS.get(name)
                hint = f"install it with: pip install '{extra}'" if extra else None
                raise GeneratorNotFoundError(name, self.generator_names(), hint)
            return name, reg, {}
        ref_key = next((k for k in _ENTRY_REF_KEYS if k in entry), None)
        ref = str(entry[ref_key]) if ref_key else name
        reg = self._find_registration(ref)
        if reg is None:
            key = f"generators.{name}" + (f".{ref_key}" if ref_key else "")
            broken = self.unavailable_plugin(ref)
            if broken is not None:
                raise cfg.error(unavailable_reason(broken), key)
            hint = _INSTALL_HINTS.get(ref)
            installed = ", ".join(self.registered_names()) or "none"
            problem = f"no installed generator plugin provides {ref!r} (installed: {installed})"
            if hint:
                problem += f"; install it with: pip install '{hint}'"
            raise cfg.error(problem, key)
        settings = {k: v for k, v in entry.items() if k not in _ENTRY_REF_KEYS}
        if cfg.path is not None:
            base_dir = cfg.path.parent
            for key in reg.resolve().path_settings:
                value = settings.get(key)
                if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                    settings[key] = str(base_dir / value)
        return name, reg, settings

    def get_generator(
        self, name: str | None = None, config: Mapping[str, Any] | None = None
    ) -> BaseImageGenerator:
        """Create the generator called ``name`` (default: see :meth:`default_name`).

        ``name`` is a configured entry or a registered plugin name. ``config`` is merged over
        the entry's settings from the configuration file. An entry with ``servers:`` gives a
        :class:`~degrees37_imagegen.batch.GeneratorPool`, one generator per server. Raises
        :class:`GeneratorNotFoundError` (listing the available names) for an unknown name and
        :class:`ConfigError` (naming file and key) for bad settings.
        """
        entry_name, reg, settings = self.resolve(name)
        if config:
            settings = _deep_merge(settings, config)
        cls = reg.resolve()
        cfg = self.config
        prefix = f"generators.{entry_name}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnknownSettingWarning)
            try:
                if "servers" in settings:  # one generator per server, used as one
                    from .batch.pool import GeneratorPool

                    generator: BaseImageGenerator = GeneratorPool.from_settings(
                        cls, settings, name=entry_name
                    )
                else:
                    generator = cls(settings, name=entry_name)
            except ConfigError as exc:
                line = cfg.lines.get(f"{prefix}.{exc.key}") if exc.key else None
                raise exc.located(path=cfg.path, key_prefix=prefix, line=line) from None
            except GeneratorError:
                raise
            except Exception as exc:  # the plugin's own code failed: one line, named
                from ._pipeline import plugin_label

                raise PluginError(
                    f"generator {entry_name!r} ({plugin_label(cls)}) failed: "
                    f"{type(exc).__name__}: {exc}",
                    generator=entry_name,
                ) from exc
        for w in caught:
            message = str(w.message)
            if issubclass(w.category, UnknownSettingWarning) and cfg.path is not None:
                message = f"{cfg.path}: {message}"
            warnings.warn(message, w.category, stacklevel=2)
        return generator

    def __repr__(self) -> str:
        origin = self._config.origin if self._config is not None else "not loaded"
        return f"<GeneratorRegistry config={origin!r} discovered={self._discovered}>"
