from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from degrees37_imagegen import GeneratorRegistry, PluginLoadError, PluginWarning, hookimpl
from degrees37_imagegen.errors import GeneratorError
from degrees37_imagegen.plugins import (
    PluginInfo,
    check_targets,
    discover_plugins,
    new_plugin_manager,
)

from .conftest import make_plugin_dist


def test_third_party_plugin_is_discovered_and_generates(plugin_site: Path, tmp_path: Path) -> None:
    reg = GeneratorRegistry({"generators": {}})
    with pytest.warns(PluginWarning):
        names = reg.registered_names()
    assert "echo" in names
    gen = reg.get_generator("echo", {"colour": "navy"})
    image_id = gen.generate_image("x", width=64, height=32)
    assert image_id is not None
    assert gen.download_image(image_id, tmp_path / "e.png")
    from PIL import Image

    with Image.open(tmp_path / "e.png") as img:
        assert img.size == (64, 32)


def test_broken_plugin_is_recorded_and_the_rest_works(plugin_site: Path) -> None:
    reg = GeneratorRegistry({"generators": {}})
    with pytest.warns(PluginWarning, match=r"plugin 'broken' .* failed to load: RuntimeError"):
        infos = reg.plugins
    plugins = {p.name: p for p in infos}
    assert plugins["broken"].status == "broken"
    assert "broken on purpose" in (plugins["broken"].error or "")
    assert plugins["broken"].distribution == "imagegen-broken"
    assert plugins["echo"].status == "ok"
    assert plugins["echo"].version == "1.0"
    assert plugins["mock"].status == "ok"
    reg.get_generator("mock")


def test_strict_mode_turns_the_warning_into_an_error(
    plugin_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEGEN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken"):
        GeneratorRegistry({"generators": {}}).registered_names()


def test_load_env_limits_plugins(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_PLUGINS", "echo, degrees37-imagegen-mock")
    reg = GeneratorRegistry({"generators": {}})
    assert reg.registered_names() == ["echo", "mock"]  # the broken one is not even imported
    statuses = {p.name: p.status for p in reg.plugins}
    assert statuses["broken"] == "disabled"
    assert statuses["invokeai"] == "disabled"


def test_load_env_none_loads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_PLUGINS", "none")
    assert GeneratorRegistry({"generators": {}}).registered_names() == []


def test_listing_plugins_imports_no_generator_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from degrees37_imagegen import GeneratorRegistry;"
        "GeneratorRegistry({}).plugins;"
        "heavy = [m for m in ('httpx', 'PIL', 'websockets', 'degrees37_imagegen_mock.generator',"
        " 'degrees37_imagegen_invokeai.generator', 'degrees37_imagegen_comfyui.generator')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_in_process_plugin_object(tmp_path: Path) -> None:
    from degrees37_imagegen_mock.generator import MockGenerator

    class Plugin:
        @hookimpl
        def register_generators(self, register):  # type: ignore[no-untyped-def]
            register("mock2", MockGenerator)

    reg = GeneratorRegistry({"generators": {}})
    info = reg.register_plugin(Plugin(), name="inline")
    assert info.generators == ["mock2"]
    assert type(reg.get_generator("mock2")).__name__ == "MockGenerator"


def test_plugin_failing_half_way_registers_nothing() -> None:
    from degrees37_imagegen_mock.generator import MockGenerator

    class Half:
        @hookimpl
        def register_generators(self, register):  # type: ignore[no-untyped-def]
            register("half_a", MockGenerator)
            register("half_b", 42)

    reg = GeneratorRegistry({"generators": {}})
    with pytest.raises(GeneratorError, match="registered 42"):
        reg.register_plugin(Half(), name="half")
    assert "half_a" not in reg.registered_names()


def test_lazy_target_that_cannot_import_is_a_clear_error() -> None:
    reg = GeneratorRegistry({"generators": {}}, discover=False)
    reg.register("ghost", "no_such_module_xyz:Ghost")
    with pytest.raises(
        GeneratorError, match=r"generator 'ghost': cannot import no_such_module_xyz"
    ):
        reg.get_generator("ghost")


MISSPELLED_PLUGIN = """
    from degrees37_imagegen import hookimpl

    @hookimpl
    def register_generator(register):
        register("typo", "nowhere:Nothing")
"""

EMPTY_PLUGIN = """
    def register_generators(register):  # no @hookimpl: pluggy never sees it
        register("empty", "nowhere:Nothing")
"""

LAZY_TYPO_PLUGIN = """
    from degrees37_imagegen import hookimpl

    @hookimpl
    def register_generators(register):
        register("lazy", "imagegen_lazy_typo:NoSuchClass")
"""


def _mock_again(name: str) -> str:
    return f"""
    from degrees37_imagegen import hookimpl

    @hookimpl
    def register_generators(register):
        register("mock", "{name}:Other")
    """


def _discover(site: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, PluginInfo]:
    monkeypatch.syspath_prepend(str(site))
    added: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        infos = discover_plugins(
            new_plugin_manager(), lambda name, target, info: added.setdefault(name, target)
        )
    return {info.name: info for info in infos}


def test_a_misspelled_hook_marks_the_plugin_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    make_plugin_dist(site, "imagegen-typo", "imagegen_typo", MISSPELLED_PLUGIN, "typo")
    make_plugin_dist(site, "imagegen-empty", "imagegen_empty", EMPTY_PLUGIN, "empty")
    infos = _discover(site, monkeypatch)
    assert infos["typo"].status == "broken"
    assert "register_generator" in (infos["typo"].error or "")
    assert "register_generators" in (infos["typo"].error or "")
    assert infos["empty"].status == "broken"
    assert "no register_generators hook" in (infos["empty"].error or "")
    assert infos["mock"].status == "ok"


def test_two_plugins_with_one_name_the_first_distribution_by_name_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    # "degrees37-imagegen-mock" sorts before "zz-other": the mock keeps its name.
    make_plugin_dist(site, "zz-other", "zz_other", _mock_again("zz_other"), "zz")
    infos = _discover(site, monkeypatch)
    assert infos["zz"].shadowed == {"mock": "mock"}
    assert infos["mock"].shadowed == {}
    # An earlier name wins whatever order the entry points are found in.
    make_plugin_dist(site, "aa-other", "aa_other", _mock_again("aa_other"), "aa")
    infos = _discover(site, monkeypatch)
    assert infos["mock"].shadowed == {"mock": "aa"}


def test_plugins_check_imports_lazy_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    make_plugin_dist(site, "imagegen-lazy", "imagegen_lazy_typo", LAZY_TYPO_PLUGIN, "lazy")
    infos = _discover(site, monkeypatch)
    assert infos["lazy"].status == "ok"  # discovery imports no generator code
    check_targets(list(infos.values()))
    assert infos["lazy"].status == "broken"
    assert "NoSuchClass" in (infos["lazy"].error or "")
    assert infos["mock"].status == "ok"
