"""Finding and loading generator plugins from ``degrees37.generators`` entry points.

Each entry point is loaded on its own: one that fails to import or register is recorded as
broken, with its error, and a :class:`PluginWarning` names it; everything else keeps
working. Two environment variables steer this:

- ``IMAGEGEN_PLUGINS``: a comma-separated list of the plugins to load (entry-point or
  distribution names); empty or ``none`` loads none. Unset loads all.
- ``IMAGEGEN_STRICT_PLUGINS=1``: a broken plugin raises :class:`PluginLoadError` instead.

A plugin is broken when it fails to import, when its hook raises, when it implements a hook
the spec does not know (a misspelled ``@hookimpl def register_generator``: pluggy's
``check_pending``), or when it registers nothing.

When two plugins register the same generator name, the choice is deterministic: entry points
are loaded in the order of their distribution's name, then the entry point's name, and the
first registration wins. The other plugin's :attr:`PluginInfo.shadowed` names the winner
(``imagegen plugins`` shows it). A name given to ``GeneratorRegistry.register`` beats both.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from . import hookspecs
from .errors import GeneratorError

if TYPE_CHECKING:
    from .base import BaseImageGenerator

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "STRICT_ENV",
    "PluginInfo",
    "PluginLoadError",
    "PluginWarning",
    "Registration",
    "check_pending",
    "check_targets",
    "discover_plugins",
]

ENTRY_POINT_GROUP = "degrees37.generators"
LOAD_ENV = "IMAGEGEN_PLUGINS"
STRICT_ENV = "IMAGEGEN_STRICT_PLUGINS"

Status = Literal["ok", "broken", "disabled"]


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the host carries on without it."""


class PluginLoadError(GeneratorError):
    """A plugin could not be loaded and strict mode (``IMAGEGEN_STRICT_PLUGINS``) is on."""


@dataclass
class PluginInfo:
    """One installed plugin: where it comes from, what it registered, and whether it works."""

    name: str
    target: str
    distribution: str | None = None
    version: str | None = None
    generators: list[str] = field(default_factory=list)
    status: Status = "ok"
    error: str | None = None
    #: Names this plugin registered that another plugin had already taken: name -> winner.
    shadowed: dict[str, str] = field(default_factory=dict)
    #: What each registered name points at (a class, or a lazy ``module:Class`` path).
    targets: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (targets as ``module:Class`` text)."""
        data = {k: v for k, v in self.__dict__.items() if k != "targets"}
        data["targets"] = {
            name: t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"
            for name, t in self.targets.items()
        }
        return data


@dataclass
class Registration:
    """A generator name and the class behind it (or its lazy ``module:Class`` path)."""

    name: str
    target: type[BaseImageGenerator] | str
    plugin: PluginInfo | None = None
    _cls: type[BaseImageGenerator] | None = field(default=None, repr=False)

    @property
    def class_name(self) -> str:
        """The generator class's name, known without importing it."""
        if isinstance(self.target, str):
            return self.target.rpartition(":")[2].rpartition(".")[2]
        return self.target.__name__

    def resolve(self) -> type[BaseImageGenerator]:
        """Import (once) and return the generator class."""
        if self._cls is None:
            self._cls = _import_generator(self.target, self.name)
        return self._cls


def _import_generator(
    target: type[BaseImageGenerator] | str, name: str
) -> type[BaseImageGenerator]:
    from .base import BaseImageGenerator

    obj: Any = target
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except Exception as exc:
            raise GeneratorError(
                f"generator {name!r}: cannot import {target}: {type(exc).__name__}: {exc}"
            ) from exc
    if not (isinstance(obj, type) and issubclass(obj, BaseImageGenerator)):
        raise GeneratorError(f"generator {name!r}: {obj!r} is not a BaseImageGenerator subclass")
    return obj


def strict_mode() -> bool:
    """Whether broken plugins raise instead of warning (``IMAGEGEN_STRICT_PLUGINS``)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _allowed() -> set[str] | None:
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    names = {part.strip() for part in raw.split(",") if part.strip()}
    return set() if names <= {"none"} else names


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows the generator hook spec."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def call_register(
    pm: pluggy.PluginManager,
    plugin: object,
    info: PluginInfo,
    add: Any,
) -> None:
    """Call ``plugin``'s ``register_generators`` hook and pass what it registered to ``add``.

    Nothing is added unless the whole hook succeeds, so a plugin that fails half-way leaves
    no half-registered names behind.
    """
    pending: list[tuple[str, type[BaseImageGenerator] | str]] = []

    def register(name: str, generator: type[BaseImageGenerator] | str) -> None:
        if not isinstance(name, str) or not name:
            raise GeneratorError(f"plugin {info.name!r} registered an invalid name {name!r}")
        if not isinstance(generator, (str, type)):
            raise GeneratorError(
                f"plugin {info.name!r} registered {generator!r} for {name!r}: "
                "expected a BaseImageGenerator subclass or a 'module:Class' string"
            )
        pending.append((name, generator))

    impls = [i for i in pm.hook.register_generators.get_hookimpls() if i.plugin is plugin]
    if not impls:
        raise GeneratorError(
            f"plugin {info.name!r} implements no register_generators hook "
            "(is the function marked with @hookimpl and spelled register_generators?)"
        )
    for impl in impls:
        impl.function(register=register)
    if not pending:
        raise GeneratorError(f"plugin {info.name!r} registered no generator")
    for name, generator in pending:
        info.targets[name] = generator
        add(name, generator, info)
        info.generators.append(name)


def check_pending(pm: pluggy.PluginManager, plugin: object) -> None:
    """Raise if ``plugin`` implements a hook that the spec does not know (a misspelling).

    pluggy's ``check_pending`` checks every registered plugin; the others passed already.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        raise GeneratorError(f"{exc}; the hook this project calls is register_generators") from None


def check_targets(infos: list[PluginInfo]) -> None:
    """Import every lazy ``module:Class`` target; mark the plugins whose targets fail broken.

    Discovery imports no generator code (to start fast), so a typo in a target is found
    only when the generator is first used; ``imagegen plugins --check`` finds it now.
    """
    for info in infos:
        if info.status != "ok":
            continue
        for name, target in info.targets.items():
            try:
                _import_generator(target, name)
            except GeneratorError as exc:
                info.status = "broken"
                info.error = str(exc)
                break


def discover_plugins(
    pm: pluggy.PluginManager, add: Any, *, strict: bool | None = None
) -> list[PluginInfo]:
    """Load every ``degrees37.generators`` entry point and let it register its generators.

    ``add(name, target, info)`` receives each registration. Returns one :class:`PluginInfo`
    per entry point, broken and disabled ones included.
    """
    strict = strict_mode() if strict is None else strict
    allowed = _allowed()
    seen: set[tuple[str, str]] = set()
    infos: list[PluginInfo] = []
    owners: dict[str, str] = {}

    def add_first(name: str, target: Any, info: PluginInfo) -> None:
        if name in owners:
            info.shadowed[name] = owners[name]
            warnings.warn(
                f"generator name {name!r} is registered by both plugin {owners[name]!r} and "
                f"{info.name!r}; using {owners[name]!r}",
                PluginWarning,
                stacklevel=4,
            )
            return
        owners[name] = info.name
        add(name, target, info)

    eps = sorted(
        metadata.entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: ((_dist_of(ep)[0] or "").lower(), ep.name, ep.value),
    )
    for ep in eps:
        if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        dist_name, version = _dist_of(ep)
        info = PluginInfo(name=ep.name, target=ep.value, distribution=dist_name, version=version)
        infos.append(info)
        if allowed is not None and ep.name not in allowed and dist_name not in allowed:
            info.status = "disabled"
            continue
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=f"{ep.name}:{ep.value}")
            check_pending(pm, plugin)
            call_register(pm, plugin, info, add_first)
        except Exception as exc:
            info.status = "broken"
            info.error = f"{type(exc).__name__}: {exc}"
            message = f"generator plugin {ep.name!r} ({ep.value}) failed to load: {info.error}"
            if strict:
                raise PluginLoadError(message) from exc
            warnings.warn(message, PluginWarning, stacklevel=2)
    return infos
