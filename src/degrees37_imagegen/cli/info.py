"""``imagegen plugins``, ``imagegen config`` and ``imagegen check``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Annotated, Any, Optional

import typer

from ._errors import EXIT_FAILED, cli_errors, echo_err
from ._options import ConfigOption
from ._registry import open_registry

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


def config_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the resolved configuration (secrets hidden) and where it came from."""
    with cli_errors():
        from ..redaction import redact

        registry = open_registry(config)
        cfg = registry.config
        entries: dict[str, Any] = {}
        for name in sorted(cfg.generators):
            _, reg, settings = registry.resolve(name)
            secret = reg.resolve().secret_settings
            entries[name] = {"plugin": reg.name, "settings": redact(settings, secret)}
        data = {
            "source": str(cfg.path) if cfg.path else None,
            "origin": cfg.origin,
            "default_generator": registry.default_name(),
            "generators": entries,
            "available": registry.generator_names(),
        }
        if as_json:
            typer.echo(json.dumps(data, indent=2, default=str))
            return
        import yaml

        typer.echo(f"# source: {data['source'] or 'built-in default'} ({cfg.origin})")
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


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
