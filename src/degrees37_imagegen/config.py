"""The YAML configuration: loading, ``${VAR}`` expansion, and where it comes from.

A file looks like::

    default_generator: mock
    generators:
      mock:
        delay: ${MOCK_DELAY:-0}
      mock_slow:
        class: mock          # the plugin (registered name or class name) backing this entry
        delay: 2

It is found, in order, at ``--config PATH``, ``$IMAGEGEN_CONFIG``,
``./config/generators.yaml`` and ``<user config dir>/generators.yaml``; with none of them the
built-in default (only ``mock``) applies.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .yamlfast import SafeLoader, load_yaml, paused_gc

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "ConfigPlace",
    "GeneratorsConfig",
    "config_places",
    "expand_env",
    "find_config",
    "load_config",
    "parse_config",
    "user_config_dir",
]

#: Environment variable naming the configuration file.
CONFIG_ENV = "IMAGEGEN_CONFIG"
#: The configuration file looked for in the working directory.
DEFAULT_CONFIG_PATH = Path("config") / "generators.yaml"

_TOP_LEVEL_KEYS = {"generators", "default_generator"}
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ConfigPlace:
    """One place a configuration file is looked for, and what was found there.

    ``origin`` names the place (``--config``, ``$IMAGEGEN_CONFIG``, ``working directory``,
    ``user config directory``); ``path`` is the file it stands for (``None`` when an option
    or variable was not given); ``status`` is ``used``, ``not given``, ``not set``,
    ``not found`` or ``not looked at`` (an earlier place was used).
    """

    origin: str
    path: Path | None
    status: str


@dataclass
class GeneratorsConfig:
    """A loaded configuration.

    ``generators`` maps entry names to their settings (already expanded); ``path`` is the
    file it came from (``None`` for the built-in default) and ``origin`` says how that file
    was chosen (``--config``, ``$IMAGEGEN_CONFIG``...). ``lines`` maps key paths such as
    ``generators.mock.delay`` to their line in the file, for error messages. ``searched``
    lists every place :func:`find_config` looked, in order (empty when the file was named
    directly).
    """

    generators: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_generator: str | None = None
    path: Path | None = None
    origin: str = "built-in default"
    lines: Mapping[str, int] = field(default_factory=dict)
    searched: list[ConfigPlace] = field(default_factory=list)

    def error(self, problem: str, key: str | None = None) -> ConfigError:
        """A :class:`ConfigError` for ``key`` in this configuration's file."""
        return ConfigError(problem, path=self.path, key=key, line=self.lines.get(key or ""))

    def entry(self, name: str) -> dict[str, Any] | None:
        """The settings of entry ``name``, or ``None``."""
        return self.generators.get(name)


def builtin_config() -> GeneratorsConfig:
    """The configuration used when no file is found: the mock generator, and nothing else."""
    return GeneratorsConfig(generators={}, default_generator="mock")


class _Str(str):
    """A string from the YAML file with a ``${`` in it, which remembers its line and
    whether it was unquoted (a whole ``${VAR}`` unquoted takes the type of its value)."""

    line: int
    plain: bool


class _Loader(SafeLoader):
    """The safe loader (libyaml's when there is one) marking the strings to expand (no
    arbitrary objects, ever)."""


def _construct_str(loader: _Loader, node: yaml.ScalarNode) -> str:
    text = str(loader.construct_scalar(node))
    if "${" not in text:
        return text
    value = _Str(text)
    value.line = node.start_mark.line + 1
    value.plain = not node.style  # None (pure Python parser) or "" (libyaml) when plain
    return value


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)


class _KeyLines(Mapping[str, int]):
    """The line of each key path (``generators.mock.delay``), looked up in the YAML text
    when an error names one: parsed again then (once), rather than kept for every key of a
    big file."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: yaml.Node | None = None

    def __getitem__(self, keypath: str) -> int:
        if self._root is None:
            self._root = yaml.compose(self._text, Loader=SafeLoader)
        node = self._root
        line = None
        for part in keypath.split("."):
            if not isinstance(node, yaml.MappingNode):
                raise KeyError(keypath)
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and str(key.value) == part:
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                raise KeyError(keypath)
        if line is None:
            raise KeyError(keypath)
        return line

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def expand_env(
    text: str,
    environ: Mapping[str, str] | None = None,
    *,
    key: str | None = None,
    path: Path | None = None,
    line: int | None = None,
) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in ``text``; ``$${`` gives a literal ``${``.

    As in the shell, ``:-`` uses the default when the variable is unset *or empty*. An unset
    variable without a default, a ``${`` without its ``}`` and a reference that is not a
    variable name raise :class:`ConfigError` naming it (and ``key``/``path``/``line``).
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            raise ConfigError(
                "'${' without a closing '}' (write $${ for a literal ${)",
                path=path,
                key=key,
                line=line,
            )
        name, sep, default = inner.partition(":-")
        if not _NAME.match(name):
            raise ConfigError(
                f"bad variable reference ${{{inner}}} (use ${{NAME}} or ${{NAME:-default}})",
                path=path,
                key=key,
                line=line,
            )
        value = env.get(name)
        if sep:
            return value if value else default
        if value is None:
            raise ConfigError(
                f"environment variable {name} is not set (give a default with ${{{name}:-value}})",
                path=path,
                key=key,
                line=line,
            )
        return value

    return _VAR.sub(replace, text)


@functools.lru_cache(maxsize=1024)  # the same few values (0, true...) come back often
def _typed(text: str) -> Any:
    """The value ``text`` would have as a plain YAML scalar (``2`` is 2, ``true`` is True)."""
    if text == "":
        return ""
    try:
        value = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def _expand_tree(
    value: Any, keypath: tuple[Any, ...], path: Path | None, env: Mapping[str, str]
) -> Any:
    """``value`` with every ``${...}`` expanded, in place (only strings with one change)."""
    if isinstance(value, dict):
        if any(isinstance(k, _Str) for k in value):  # keys are kept as written
            value = {str(k) if isinstance(k, _Str) else k: v for k, v in value.items()}
        for k, v in value.items():
            if isinstance(v, (dict, list, _Str)):
                value[k] = _expand_tree(v, (*keypath, k), path, env)
        return value
    if isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (dict, list, _Str)):
                value[i] = _expand_tree(v, (*keypath, i), path, env)
        return value
    if isinstance(value, _Str):
        key = _keypath(keypath)
        expanded = expand_env(value, env, key=key, path=path, line=value.line)
        whole = _VAR.fullmatch(value.strip()) is not None and not value.startswith("$${")
        if whole and value.plain:
            return _typed(expanded)
        return str(expanded)
    return value


def _keypath(parts: tuple[Any, ...]) -> str:
    """``generators.mock.delay``, ``generators.x.list[2]``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_config(
    text: str,
    path: str | Path | None = None,
    *,
    origin: str = "file",
    environ: Mapping[str, str] | None = None,
) -> GeneratorsConfig:
    """Parse and check configuration ``text`` (from ``path``, used in error messages)."""
    file = Path(path) if path is not None else None
    try:
        raw, _ = load_yaml(text, _Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid YAML: {problem}",
            path=file,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "the file must be a mapping with 'generators:' and 'default_generator:'",
            path=file,
        )
    env = os.environ if environ is None else environ
    with paused_gc():
        data = _expand_tree(raw, (), file, env)
    cfg = GeneratorsConfig(path=file, origin=origin, lines=_KeyLines(text))
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            warnings.warn(
                str(cfg.error(f"unknown top-level key {key!r} is ignored", key=str(key))),
                UserWarning,
                stacklevel=2,
            )
    generators = data.get("generators") or {}
    if not isinstance(generators, dict):
        raise cfg.error("must be a mapping of generator names to settings", "generators")
    for name, settings in generators.items():
        keypath = f"generators.{name}"
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise cfg.error("must be a mapping of settings", keypath)
        for ref_key in ("class", "plugin"):
            if ref_key in settings and not isinstance(settings[ref_key], str):
                raise cfg.error("must be a plugin or class name", f"{keypath}.{ref_key}")
        cfg.generators[str(name)] = settings
    default = data.get("default_generator")
    if default is not None and not isinstance(default, str):
        raise cfg.error("must be a generator name", "default_generator")
    cfg.default_generator = default
    return cfg


def load_config(
    path: str | Path, *, origin: str = "file", environ: Mapping[str, str] | None = None
) -> GeneratorsConfig:
    """Read and check the configuration file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file: {exc}", path=file) from None
    return parse_config(text, file, origin=origin, environ=environ)


def user_config_dir() -> Path:
    """The per-user configuration folder: ``~/.config/degrees37-imagegen`` on Linux
    (``$XDG_CONFIG_HOME`` respected), ``~/Library/Application Support/...`` on macOS,
    ``%APPDATA%\\degrees37-imagegen`` on Windows."""
    app = "degrees37-imagegen"
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / app
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / app
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / app


def config_places(
    explicit: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> list[tuple[str, Path | None, str]]:
    """The places a configuration file is looked for, in order: ``(origin, path, why
    missing)``, where ``path`` is ``None`` (and ``why missing`` says so) for an option or
    variable that was not given."""
    env = os.environ if environ is None else environ
    from_env = env.get(CONFIG_ENV)
    return [
        ("--config", Path(explicit) if explicit is not None else None, "not given"),
        (f"${CONFIG_ENV}", Path(from_env) if from_env else None, "not set"),
        ("working directory", DEFAULT_CONFIG_PATH, "not found"),
        ("user config directory", user_config_dir() / "generators.yaml", "not found"),
    ]


def find_config(
    explicit: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> GeneratorsConfig:
    """Load the configuration from the first place that has one (see the module docs).

    The result's ``searched`` says what was found at every place. A file named by
    ``--config`` or ``$IMAGEGEN_CONFIG`` must exist.
    """
    env = os.environ if environ is None else environ
    searched: list[ConfigPlace] = []
    chosen: GeneratorsConfig | None = None
    for origin, path, missing in config_places(explicit, environ=env):
        if chosen is not None:
            searched.append(ConfigPlace(origin, path, "not looked at"))
            continue
        if path is None:
            searched.append(ConfigPlace(origin, None, missing))
            continue
        named = origin in {"--config", f"${CONFIG_ENV}"}
        if not named and not path.is_file():
            searched.append(ConfigPlace(origin, path, missing))
            continue
        chosen = load_config(path, origin=origin, environ=env)
        searched.append(ConfigPlace(origin, path, "used"))
    if chosen is None:
        chosen = builtin_config()
    chosen.searched = searched
    return chosen
