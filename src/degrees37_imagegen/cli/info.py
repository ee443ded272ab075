"""``imagegen plugins``, ``imagegen config`` and ``imagegen check``."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ._errors import EXIT_FAILED, EXIT_USAGE, cli_errors, echo_err
from ._options import ConfigOption
from ._registry import open_registry

if TYPE_CHECKING:
    from ..config import GeneratorsConfig
    from ..registry import GeneratorRegistry

__all__ = ["check", "config_command", "plugins", "table"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain, aligned text table (no colours, safe to pipe)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def plugins(
    as_json: JsonOption = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also import every plugin's generator classes and report those that fail.",
        ),
    ] = False,
) -> None:
    """List installed generator plugins: distribution, version, names and status.

    When two plugins register one name, the plugin whose distribution name sorts first
    wins; the other shows the name as shadowed. --check exits 1 if a plugin is broken.
    """
    with cli_errors():
        from ..plugins import check_targets, discover_plugins, new_plugin_manager

        # Straight from the entry points: no configuration, no generator code imported
        # (unless --check asks for it).
        infos = discover_plugins(new_plugin_manager(), lambda *registration: None)
        if check:
            check_targets(infos)
        broken = check and any(info.status == "broken" for info in infos)
        if as_json:
            typer.echo(json.dumps([info.as_dict() for info in infos], indent=2))
            if broken:
                raise typer.Exit(EXIT_FAILED)
            return
        if not infos:
            typer.echo(
                "no generator plugins installed (try: pip install 'degrees37-imagegen[mock]')"
            )
            return
        rows = [
            [
                info.name,
                info.distribution or "-",
                info.version or "-",
                ", ".join(
                    f"{g} (shadowed by {info.shadowed[g]})" if g in info.shadowed else g
                    for g in info.generators
                )
                or "-",
                info.status if not info.error else f"{info.status}: {info.error}",
            ]
            for info in infos
        ]
        typer.echo(table(["plugin", "distribution", "version", "generators", "status"], rows))
        if broken:
            raise typer.Exit(EXIT_FAILED)


def _scalar(value: Any) -> str:
    """A setting's value as it would be written in the YAML file."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _default_source(registry: GeneratorRegistry) -> str:
    """Where the default generator comes from, in words."""
    from ..registry import TESTING_ENV, _truthy

    cfg = registry.config
    if _truthy(os.environ.get(TESTING_ENV)):
        return f"${TESTING_ENV} is set"
    if cfg.path is not None and cfg.default_generator:
        return f"default_generator in {cfg.path}"
    if cfg.default_generator and cfg.origin != "built-in default":
        return f"default_generator ({cfg.origin})"
    return "built-in default"


def describe_entry(registry: GeneratorRegistry, name: str) -> dict[str, Any]:
    """One configured entry as ``imagegen config`` shows it: the plugin behind it, its
    effective settings (secrets hidden; ``defaults`` names those not set in the file), and
    the error and warnings that making the generator gives, as ``generate`` would say them.
    """
    from ..base import COMMON_SETTINGS, UnknownSettingWarning
    from ..errors import GeneratorError
    from ..redaction import redact

    entry: dict[str, Any] = {
        "plugin": None,
        "class": None,
        "settings": {},
        "defaults": [],
        "unknown": [],
        "error": None,
        "warnings": [],
    }
    try:
        _, reg, given = registry.resolve(name)
        cls = reg.resolve()
    except GeneratorError as exc:
        entry["error"] = str(exc)
        given = {k: v for k, v in (registry.config.entry(name) or {}).items()}
        entry["settings"] = redact(given)
        return entry
    entry["plugin"] = reg.name
    entry["class"] = cls.__name__
    effective = {**cls.default_settings, **given}
    entry["settings"] = redact(effective, cls.secret_settings)
    entry["defaults"] = [key for key in effective if key not in given]
    known = set(cls.default_settings) | COMMON_SETTINGS
    entry["unknown"] = [key for key in given if key not in known]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            registry.get_generator(name).close()
        except GeneratorError as exc:
            entry["error"] = str(exc)
    # Unknown settings are marked on their line; other warnings are listed.
    entry["warnings"] = [
        str(w.message) for w in caught if not issubclass(w.category, UnknownSettingWarning)
    ]
    return entry


def config_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the configuration in use: the file and every place looked in, the default
    generator, and each entry's effective settings (secrets hidden), checked.

    Exit codes: 0 every entry is valid, 2 some entry has an error (all are still shown).
    """
    with cli_errors():
        registry = open_registry(config)
        cfg = registry.config
        entries = {name: describe_entry(registry, name) for name in cfg.generators}
        default = registry.default_name()
        default_error: str | None = None
        from ..errors import GeneratorError

        try:
            registry.resolve(None)
        except GeneratorError as exc:
            default_error = str(exc)
        others = [n for n in registry.generator_names() if n not in cfg.generators]
        data: dict[str, Any] = {
            "file": str(cfg.path) if cfg.path else None,
            "origin": cfg.origin,
            "searched": [
                {"origin": p.origin, "path": str(p.path) if p.path else None, "status": p.status}
                for p in cfg.searched
            ],
            "default_generator": default,
            "default_from": _default_source(registry),
            "default_error": default_error,
            "generators": entries,
            "available": registry.generator_names(),
        }
        problems = sum(1 for e in entries.values() if e["error"]) + (default_error is not None)
        if as_json:
            typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
        else:
            typer.echo("\n".join(_config_text(cfg, data, entries, others)))
        if problems:
            echo_err(f"{problems} problem(s) in the configuration (shown above)")
            raise typer.Exit(EXIT_USAGE)


def _config_text(
    cfg: GeneratorsConfig,
    data: dict[str, Any],
    entries: dict[str, dict[str, Any]],
    others: list[str],
) -> list[str]:
    if cfg.path is not None:
        lines = [f"config file: {cfg.path} (from {cfg.origin})"]
    else:
        lines = ["config file: none found; using the built-in default (mock only)"]
    if cfg.searched:
        lines.append("looked in, in order:")
        rows = [
            [f"  {i}.", p.origin, str(p.path) if p.path else "-", p.status]
            for i, p in enumerate(cfg.searched, 1)
        ]
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"default generator: {data['default_generator']} ({data['default_from']})")
    if data["default_error"]:
        lines.append(f"  error: {data['default_error']}")
    lines.append("")
    if not entries:
        lines.append("generators: none configured")
    else:
        lines.append("generators:")
    for name, entry in entries.items():
        backed = f"plugin {entry['plugin']}, {entry['class']}" if entry["plugin"] else "no plugin"
        lines.append(f"  {name} ({backed})")
        if entry["error"]:
            lines.append(f"    error: {entry['error']}")
        lines += [f"    warning: {w}" for w in entry["warnings"]]
        for key, value in entry["settings"].items():
            mark = ""
            if key in entry["defaults"]:
                mark = "  (default)"
            elif key in entry["unknown"]:
                mark = "  (unknown setting: ignored)"
            lines.append(f"    {key}: {_scalar(value)}{mark}")
    if others:
        lines.append("")
        lines.append(f"other names --generator accepts: {', '.join(others)}")
    return lines


def check(
    names: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="NAME...",
            help="Generators to check (default: every configured one).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Test the connection of generators: a table with each one's status and the reason.

    Exit codes: 0 all ready, 1 some not ready, 2 an unknown name.
    """
    with cli_errors():
        from ..errors import ConfigError, GeneratorError
        from ..health import check_generator

        registry = open_registry(config)
        targets = list(names or registry.config.generators or [registry.default_name()])
        if names:
            for name in targets:  # an unknown name is the user's mistake: exit 2, one line
                # A bad entry (ConfigError) is one row of the table, with its error.
                with contextlib.suppress(ConfigError):
                    registry.resolve(name)
        rows: list[list[str]] = []
        failed = 0
        for name in targets:
            try:
                with registry.get_generator(name) as gen:
                    ok, reason = check_generator(gen)
                    status = "ok" if ok else "not ready"
                    rows.append([name, type(gen).__name__, status, reason])
            except GeneratorError as exc:  # a broken entry is one row, not the end of the table
                ok = False
                rows.append([name, "-", "error", str(exc)])
            failed += not ok
        typer.echo(table(["generator", "class", "status", "reason"], rows))
        if failed:
            echo_err(f"{failed} of {len(targets)} generator(s) not ready")
            raise typer.Exit(EXIT_FAILED)
