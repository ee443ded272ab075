"""``imagegen new-plugin NAME``: write a ready generator plugin package from the template."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from ._errors import cli_errors

__all__ = ["PluginNames", "new_plugin", "plugin_names", "write_plugin"]

#: What a plugin name may be: lower-case words joined by ``-`` or ``_``.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

#: Each file of the package, and the template (in ``degrees37_imagegen/templates/plugin``)
#: it is made from. Templates are not named ``*.py`` so that no tool takes them for code.
FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    ".gitignore": "gitignore.tmpl",
    ".github/workflows/ci.yml": "ci.yml.tmpl",
    "src/{package}/__init__.py": "init.py.tmpl",
    "src/{package}/plugin.py": "plugin.py.tmpl",
    "src/{package}/generator.py": "generator.py.tmpl",
    "src/{package}/py.typed": None,
    "tests/test_contract.py": "test_contract.py.tmpl",
}


class PluginNames:
    """The names one plugin name gives: ``echo`` gives the generator ``echo``, the
    distribution ``imagegen-echo``, the package ``imagegen_echo`` and ``EchoGenerator``."""

    def __init__(self, name: str) -> None:
        self.name = name
        words = re.split(r"[-_]", name)
        self.dist = "imagegen-" + "-".join(words)
        self.package = "imagegen_" + "_".join(words)
        self.class_name = "".join(w.capitalize() for w in words) + "Generator"

    def fields(self) -> dict[str, str]:
        """The template's fields: ``{{name}}``, ``{{dist}}``, ``{{package}}``..."""
        from .. import __version__

        return {
            "name": self.name,
            "dist": self.dist,
            "package": self.package,
            "class_name": self.class_name,
            "core_version": __version__,
        }


def plugin_names(name: str) -> PluginNames:
    """The names for plugin ``name``; :class:`InvalidRequestError` for a name that cannot be
    a generator, package and distribution name at once."""
    from ..errors import InvalidRequestError

    if not NAME_PATTERN.fullmatch(name):
        raise InvalidRequestError(
            f"plugin name {name!r} must be lower-case letters and digits, words joined by "
            "'-' or '_', starting with a letter (e.g. 'echo', 'my-server')"
        )
    return PluginNames(name)


def write_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the package for plugin ``name`` into ``directory/imagegen-NAME``; return its path.

    Raises :class:`OutputError` if that folder exists and is not empty (nothing is
    overwritten).
    """
    from ..errors import OutputError

    names = plugin_names(name)
    fields = names.fields()
    root = Path(directory) / names.dist
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise OutputError(f"cannot write {root}: it exists and is not an empty folder", root)
    templates = resources.files("degrees37_imagegen").joinpath("templates").joinpath("plugin")
    for target, template in FILES.items():
        path = root / target.format(package=names.package)
        text = "" if template is None else templates.joinpath(template).read_text("utf-8")
        for key, value in fields.items():
            text = text.replace("{{" + key + "}}", value)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}", path) from exc
    return root


def new_plugin(
    name: Annotated[str, typer.Argument(help="The generator's name, e.g. 'echo'.")],
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Where to create the imagegen-NAME folder.", file_okay=False),
    ] = Path("."),
) -> None:
    """Write a ready generator plugin package: imagegen-NAME with a generator, its entry
    point, the contract tests, a README and a CI workflow."""
    with cli_errors():
        root = write_plugin(name, directory)
        names = plugin_names(name)
        typer.echo(f"created {root}/ ({len(FILES)} files); next:")
        typer.echo(f"  pip install -e '{root}[test]'")
        typer.echo(f"  python -m pytest {root}")
        typer.echo(f"  imagegen generate 'a lighthouse' -g {names.name} -o lighthouse.png")
