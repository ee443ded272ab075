from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from degrees37_imagegen.cli import app
from degrees37_imagegen.cli._options import ParamOption, PromptArgument, ReadableCommand

runner = CliRunner()


def test_plugins_lists_installed_plugins() -> None:
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "degrees37-imagegen-mock" in result.stdout
    assert "0.1.0" in result.stdout


def test_plugins_shows_third_party_and_broken(plugin_site: Path) -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["echo"]["generators"] == ["echo"]
    assert plugins["broken"]["status"] == "broken"
    assert "broken on purpose" in plugins["broken"]["error"]
    assert "warning: generator plugin 'broken'" in result.stderr


def test_generate_with_third_party_plugin(plugin_site: Path, in_tmp: Path) -> None:
    result = runner.invoke(
        app, ["generate", "x", "-g", "echo", "-W", "40", "-H", "20", "-o", "e.png"]
    )
    assert result.exit_code == 0, result.stderr
    assert (in_tmp / "e.png").is_file()


SECRET_CONFIG = """\
default_generator: remote
generators:
  remote:
    class: mock
    api_key: ${IMAGEGEN_TEST_KEY}
    description: "http://user:hunter2@gpu:9090"
"""


def test_config_hides_secrets(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_TEST_KEY", "sk-live-0123456789")
    Path("c.yaml").write_text(SECRET_CONFIG)
    result = runner.invoke(app, ["config", "-c", "c.yaml"])
    assert result.exit_code == 0, result.stderr
    assert "sk-live-0123456789" not in result.stdout + result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "api_key: '***'" in result.stdout
    assert "config file: c.yaml (from --config)" in result.stdout
    assert "default generator: remote (default_generator in c.yaml)" in result.stdout


def test_secrets_never_printed_by_generate_or_check(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEGEN_TEST_KEY", "sk-live-0123456789")
    Path("c.yaml").write_text(SECRET_CONFIG.replace("class: mock", "class: mock\n    fail_rate: 1"))
    for args in (
        ["generate", "x", "-c", "c.yaml"],
        ["check", "-c", "c.yaml"],
        ["--debug", "generate", "x", "-c", "c.yaml"],
    ):
        result = runner.invoke(app, args)
        assert "sk-live-0123456789" not in result.stdout + result.stderr
        assert "hunter2" not in result.stdout + result.stderr


def test_config_json(in_tmp: Path) -> None:
    result = runner.invoke(app, ["config", "--json"])
    data = json.loads(result.stdout)
    assert data["origin"] == "built-in default"
    assert data["file"] is None
    assert data["default_generator"] == "mock"
    assert data["default_from"] == "built-in default"
    statuses = [p["status"] for p in data["searched"]]
    assert statuses == ["not given", "not set", "not found", "not found"]
    assert "mock" in data["available"]


def test_config_without_a_file_names_every_place_it_looked(in_tmp: Path) -> None:
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "config file: none found; using the built-in default (mock only)"
    assert lines[1] == "looked in, in order:"
    assert lines[2].split() == ["1.", "--config", "-", "not", "given"]
    assert lines[3].split() == ["2.", "$IMAGEGEN_CONFIG", "-", "not", "set"]
    assert lines[4].split()[:4] == ["3.", "working", "directory", "config/generators.yaml"]
    assert lines[5].split()[4].endswith("degrees37-imagegen/generators.yaml")
    assert "default generator: mock (built-in default)" in lines
    assert "null" not in result.stdout
    assert "built-in default (built-in default)" not in result.stdout


CHECKED_CONFIG = """\
generators:
  fast:
    class: mock
    delay: 0
    colr: red
  bad:
    class: mock
    fail_rate: 2
  remote:
    class: mock
    api_key: sk-live-0123456789
  gone:
    class: nothing_installed
"""


def test_config_shows_effective_settings_checked(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("config").mkdir()
    Path("config/generators.yaml").write_text(CHECKED_CONFIG)
    monkeypatch.setenv("IMAGEGEN_CONFIG", "")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2  # after the whole listing
    out = result.stdout
    assert out.startswith("config file: config/generators.yaml (from working directory)\n")
    assert "working directory      config/generators.yaml" in out
    assert "not looked at" in out  # the user folder comes after
    assert "  fast (plugin mock, MockGenerator)\n    delay: 0\n" in out
    assert "    failure: generation  (default)" in out
    assert "    colr: red  (unknown setting: ignored)" in out
    generate = runner.invoke(app, ["generate", "x", "-g", "bad"])
    assert generate.exit_code == 2
    assert f"  bad (plugin mock, MockGenerator)\n    {generate.stderr.strip()}\n" in out
    assert "    api_key: '***'" in out
    assert "sk-live" not in out
    assert "  gone (no plugin)\n    error: config/generators.yaml:13: generators.gone.class:" in out
    assert result.stderr.strip() == "2 problem(s) in the configuration (shown above)"


def test_check_table_and_exit_code(in_tmp: Path) -> None:
    Path("c.yaml").write_text("generators:\n  mock: {}\n  gone:\n    class: nothing_installed\n")
    result = runner.invoke(app, ["check", "-c", "c.yaml"])
    assert result.exit_code == 1
    assert "mock       MockGenerator  ok      ready" in result.stdout
    assert "gone       -              error   c.yaml:4: generators.gone.class: no installed" in (
        result.stdout
    )
    ok = runner.invoke(app, ["check", "mock", "-c", "c.yaml"])
    assert ok.exit_code == 0


def test_check_unknown_name_is_exit_2_with_one_error_line(in_tmp: Path) -> None:
    result = runner.invoke(app, ["check", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: unknown generator 'nope'; available: ")


DEAD_PLUGIN = """
from degrees37_imagegen import BaseImageGenerator, hookimpl


class DeadGenerator(BaseImageGenerator):
    default_settings = {"address": "127.0.0.1:1"}
    server_setting = "address"

    def test_connection(self):
        return False

    def generate_image(self, *args, **kwargs):
        raise NotImplementedError

    def download_image(self, image_id, output_path):
        raise NotImplementedError


class RaisingGenerator(DeadGenerator):
    def test_connection(self):
        raise ValueError("bad token format")


@hookimpl
def register_generators(register):
    register("dead", DeadGenerator)
    register("raising", RaisingGenerator)
"""


@pytest.fixture
def dead_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = tmp_path / "dead-site"
    site.mkdir()
    (site / "imagegen_dead.py").write_text(DEAD_PLUGIN, encoding="utf-8")
    info = site / "imagegen_dead-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imagegen-dead\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[degrees37.generators]\ndead = imagegen_dead\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("imagegen_dead", None)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_says_why_a_server_is_not_ready(dead_plugin: None, in_tmp: Path) -> None:
    port = _closed_port()
    Path("c.yaml").write_text(
        "generators:\n"
        f"  gpu:\n    class: dead\n    address: http://user:hunter2@127.0.0.1:{port}/\n"
        "  odd:\n    class: raising\n"
        "  mock: {}\n"
    )
    result = runner.invoke(app, ["check", "-c", "c.yaml"])
    assert result.exit_code == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert rows["gpu"].split(None, 3)[1:] == [
        "DeadGenerator",
        "not",
        f"ready  connection refused at 127.0.0.1:{port}",
    ]
    assert rows["odd"].endswith(
        "not ready  generator 'odd' (imagegen_dead) failed: ValueError: bad token format"
    ) or rows["odd"].endswith("not ready  test_connection() failed: ValueError: bad token format")
    assert rows["mock"].endswith("ok         ready")
    assert "hunter2" not in result.stdout
    assert result.stderr.strip() == "2 of 3 generator(s) not ready"


def test_help_lists_commands_and_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("generate", "plugins", "config", "check"):
        assert word in result.stdout


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.stdout.startswith("imagegen 0.1.0")


def test_help_shows_metavars_a_person_reads() -> None:
    generate = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "120"})
    assert generate.exit_code == 0
    text = generate.stdout
    assert "Usage: imagegen generate [OPTIONS] PROMPT" in text
    assert "-W, --width N " in text
    assert "-c, --config PATH" in text
    for typed in ("<bool>", "<str>", "<int>", "<path>"):
        assert typed not in text
    assert "{" not in text.splitlines()[0]
    batch = runner.invoke(app, ["batch", "--help"], env={"COLUMNS": "120"}).stdout
    assert "Usage: imagegen batch [OPTIONS] JOBS" in batch
    assert "  --force  " in batch  # a flag: no metavar after it
    root = runner.invoke(app, ["--help"], env={"COLUMNS": "120"}).stdout
    assert "<bool>" not in root


def test_shared_param_option_reads_key_value() -> None:
    demo = typer.Typer(rich_markup_mode=None)

    @demo.command(cls=ReadableCommand)
    def make(prompt: PromptArgument, param: ParamOption = None) -> None:
        """Demo."""

    @demo.command(cls=ReadableCommand)
    def other() -> None:
        """A second command, so that 'make' is a subcommand."""

    text = runner.invoke(demo, ["make", "--help"], env={"COLUMNS": "120"}).stdout
    assert "-p, --param KEY=VALUE" in text
    assert "[OPTIONS] PROMPT" in text
