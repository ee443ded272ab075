from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen import (
    BaseImageGenerator,
    ConfigError,
    GeneratorNotFoundError,
    GeneratorRegistry,
    UnknownSettingWarning,
)
from degrees37_imagegen.registry import PluginUnavailableError


class Recorder(BaseImageGenerator):
    """A generator that only records its settings."""

    default_settings = {"speed": 1, "colour": "red", "template": None, "api_key": None}
    path_settings = frozenset({"template"})

    def validate_config(self) -> None:
        if self.config["speed"] < 0:
            raise ConfigError("must be 0 or more", key="speed")

    def test_connection(self) -> bool:
        return True

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        return "id"

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        return False


def registry_with(cfg_path: Path | None = None) -> GeneratorRegistry:
    reg = (
        GeneratorRegistry(cfg_path, discover=False)
        if cfg_path
        else GeneratorRegistry({"generators": {}}, discover=False)
    )
    reg.register("recorder", Recorder)
    return reg


def test_new_registry_knows_installed_plugins() -> None:
    assert "mock" in GeneratorRegistry().registered_names()


def test_register_rejects_what_is_not_a_generator() -> None:
    reg = GeneratorRegistry(discover=False)
    with pytest.raises(TypeError, match="not a BaseImageGenerator subclass"):
        reg.register("bad", dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reg.register("bad", Recorder())  # type: ignore[arg-type]


def test_lazy_string_registration_is_imported_on_use(write_config: Callable[..., Path]) -> None:
    reg = GeneratorRegistry({"generators": {}}, discover=False)
    reg.register("rec", f"{__name__}:Recorder")
    assert type(reg.get_generator("rec")).__name__ == "Recorder"


def test_config_given_to_get_generator_is_merged_over_yaml(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("generators:\n  recorder:\n    speed: 5\n    colour: blue\n")
    gen = registry_with(path).get_generator("recorder", {"speed": 7})
    assert gen.config["speed"] == 7
    assert gen.config["colour"] == "blue"  # kept from YAML, not replaced


def test_entry_backed_by_class_name(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  fast:\n    class: Recorder\n    speed: 9\n")
    gen = registry_with(path).get_generator("fast")
    assert isinstance(gen, Recorder)
    assert gen.name == "fast"
    assert gen.config["speed"] == 9
    assert "class" not in gen.config


def test_entry_backed_by_plugin_name(write_config: Callable[..., Path]) -> None:
    path = write_config(
        "generators:\n  a:\n    plugin: recorder\n    speed: 1\n  b:\n    class: recorder\n"
        "    speed: 2\n"
    )
    reg = registry_with(path)
    assert reg.get_generator("a").config["speed"] == 1
    assert reg.get_generator("b").config["speed"] == 2


def test_unknown_name_lists_available(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  fast:\n    class: Recorder\n")
    with pytest.raises(GeneratorNotFoundError) as info:
        registry_with(path).get_generator("nope")
    assert str(info.value) == "unknown generator 'nope'; available: fast, recorder"
    assert isinstance(info.value, LookupError)


def test_missing_known_plugin_gets_an_install_hint() -> None:
    with pytest.raises(GeneratorNotFoundError) as info:
        GeneratorRegistry({"generators": {}}, discover=False).get_generator()
    assert str(info.value) == (
        "unknown generator 'mock'; available: none (no generator plugin is installed); "
        "install it with: pip install 'degrees37-imagegen[mock]'"
    )


def test_disabled_plugin_is_not_called_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_PLUGINS", "none")
    with pytest.raises(PluginUnavailableError) as info:
        GeneratorRegistry({"generators": {}}).get_generator()
    assert str(info.value) == (
        "generator plugin 'mock' (degrees37-imagegen-mock 0.1.0) is installed but disabled "
        "by $IMAGEGEN_PLUGINS"
    )
    assert isinstance(info.value, GeneratorNotFoundError)  # still exit 2 in the CLI


def test_entry_naming_a_missing_plugin(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  gpu:\n    class: invokeai\n")
    with pytest.raises(ConfigError) as info:
        registry_with(path).get_generator("gpu")
    message = str(info.value)
    assert message.startswith(f"{path}:3: generators.gpu.class: no installed generator plugin")
    assert "pip install 'degrees37-imagegen[invokeai]'" in message


def test_default_generator_from_config(write_config: Callable[..., Path]) -> None:
    path = write_config("default_generator: fast\ngenerators:\n  fast:\n    class: Recorder\n")
    assert registry_with(path).get_generator().name == "fast"


def test_testing_env_selects_mock(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config("default_generator: fast\ngenerators:\n  fast:\n    class: Recorder\n")
    monkeypatch.setenv("TESTING", "true")
    reg = GeneratorRegistry(path)
    reg.register("recorder", Recorder)
    assert reg.get_generator().name == "mock"
    assert reg.get_generator("fast").name == "fast"  # an explicit name still wins


def test_builtin_default_is_mock(in_tmp: Path) -> None:
    assert type(GeneratorRegistry().get_generator()).__name__ == "MockGenerator"


def test_bad_default_generator_is_a_config_error(write_config: Callable[..., Path]) -> None:
    path = write_config("default_generator: nope\n")
    with pytest.raises(ConfigError, match=r":1: default_generator: 'nope' is neither"):
        registry_with(path).get_generator()


def test_unknown_setting_warns_with_its_name(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  recorder:\n    sped: 3\n")
    with pytest.warns(UnknownSettingWarning, match=r"unknown setting 'sped'") as record:
        registry_with(path).get_generator("recorder")
    assert str(path) in str(record[0].message)


def test_known_settings_do_not_warn(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  recorder:\n    speed: 3\n    description: hi\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry_with(path).get_generator("recorder")


def test_validation_error_names_file_line_and_key(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  fast:\n    class: Recorder\n    speed: -1\n")
    with pytest.raises(ConfigError) as info:
        registry_with(path).get_generator("fast")
    assert str(info.value) == f"{path}:4: generators.fast.speed: must be 0 or more"


def test_path_settings_resolve_against_config_folder(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  recorder:\n    template: flows/t.json\n")
    gen = registry_with(path).get_generator("recorder")
    assert gen.config["template"] == str(path.parent / "flows" / "t.json")


def test_load_config_replaces_config(write_config: Callable[..., Path]) -> None:
    reg = registry_with()
    reg.load_config(write_config("generators:\n  recorder:\n    speed: 4\n"))
    assert reg.get_generator("recorder").config["speed"] == 4


def test_repr_and_info_hide_secrets(write_config: Callable[..., Path]) -> None:
    path = write_config("generators:\n  recorder:\n    api_key: sk-very-secret\n")
    gen = registry_with(path).get_generator("recorder")
    assert "sk-very-secret" not in repr(gen)
    assert "sk-very-secret" not in str(gen.info())
    assert gen.config["api_key"] == "sk-very-secret"


def test_seed_example_from_the_original_project(in_tmp: Path) -> None:
    registry = GeneratorRegistry()
    generator = registry.get_generator("mock", {"delay": 0})
    image_id = generator.generate_image("test prompt")
    assert image_id is not None
    assert generator.download_image(image_id, Path("test.png")) is True
    assert Path("test.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
