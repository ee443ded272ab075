from __future__ import annotations

from pathlib import Path

import pytest

from degrees37_imagegen import ConfigError, expand_env, find_config, load_config
from degrees37_imagegen.config import (
    DEFAULT_CONFIG_PATH,
    ConfigPlace,
    parse_config,
    user_config_dir,
)


class TestExpandEnv:
    def test_plain_variable(self) -> None:
        assert expand_env("http://${HOST}:9090", {"HOST": "gpu1"}) == "http://gpu1:9090"

    def test_default_when_unset(self) -> None:
        assert expand_env("${HOST:-localhost}", {}) == "localhost"

    def test_default_when_empty_like_the_shell(self) -> None:
        assert expand_env("${HOST:-localhost}", {"HOST": ""}) == "localhost"

    def test_set_value_wins_over_default(self) -> None:
        assert expand_env("${HOST:-localhost}", {"HOST": "gpu2"}) == "gpu2"

    def test_empty_default(self) -> None:
        assert expand_env("a${X:-}b", {}) == "ab"

    def test_default_may_contain_colons_and_slashes(self) -> None:
        assert expand_env("${URL:-http://h:1/x}", {}) == "http://h:1/x"

    def test_set_but_empty_without_default_is_empty(self) -> None:
        assert expand_env("[${X}]", {"X": ""}) == "[]"

    def test_double_dollar_is_a_literal(self) -> None:
        assert expand_env("cost $${HOME} ${A}", {"A": "1", "HOME": "/root"}) == "cost ${HOME} 1"

    def test_lone_dollar_is_left_alone(self) -> None:
        assert expand_env("$5 and $HOME", {}) == "$5 and $HOME"

    def test_several_in_one_value(self) -> None:
        assert expand_env("${A}-${B:-b}-${A}", {"A": "a"}) == "a-b-a"

    def test_unset_without_default_names_variable_key_and_file(self) -> None:
        with pytest.raises(ConfigError) as info:
            expand_env("${TOKEN}", {}, key="generators.x.token", path=Path("c.yaml"), line=4)
        message = str(info.value)
        assert "TOKEN" in message
        assert "generators.x.token" in message
        assert message.startswith("c.yaml:4:")

    def test_bad_reference(self) -> None:
        with pytest.raises(ConfigError, match="bad variable reference"):
            expand_env("${1BAD}", {})

    @pytest.mark.parametrize("text", ["${FOO", "http://${HOST:-h", "a ${A} b ${"])
    def test_unclosed_reference_is_an_error(self, text: str) -> None:
        with pytest.raises(ConfigError) as info:
            expand_env(text, {"A": "1"}, key="generators.x.url", path=Path("c.yaml"), line=2)
        assert str(info.value) == (
            "c.yaml:2: generators.x.url: '${' without a closing '}' (write $${ for a literal ${)"
        )


class TestParseConfig:
    def test_whole_value_takes_its_yaml_type(self) -> None:
        cfg = parse_config(
            "generators:\n  mock:\n    delay: ${D:-2}\n    rate: ${R:-0.5}\n"
            "    enabled: ${O:-true}\n",
            environ={},
        )
        assert cfg.generators["mock"] == {"delay": 2, "rate": 0.5, "enabled": True}

    def test_whole_value_from_environment_is_typed(self) -> None:
        cfg = parse_config("generators:\n  mock:\n    delay: ${D}\n", environ={"D": "3"})
        assert cfg.generators["mock"]["delay"] == 3

    def test_quoted_value_stays_a_string(self) -> None:
        cfg = parse_config('generators:\n  mock:\n    label: "${L:-42}"\n', environ={})
        assert cfg.generators["mock"]["label"] == "42"

    def test_partial_value_stays_a_string(self) -> None:
        cfg = parse_config("generators:\n  m:\n    url: http://h:${PORT:-9090}\n", environ={})
        assert cfg.generators["m"]["url"] == "http://h:9090"

    def test_expansion_inside_lists_and_nested_mappings(self) -> None:
        text = (
            "generators:\n  p:\n    servers:\n      - ${A:-a}\n      - b\n"
            "    headers:\n      X: ${B:-bee}\n"
        )
        cfg = parse_config(text, environ={})
        assert cfg.generators["p"] == {"servers": ["a", "b"], "headers": {"X": "bee"}}

    def test_unset_variable_error_names_file_line_and_key(self, tmp_path: Path) -> None:
        path = tmp_path / "g.yaml"
        path.write_text("generators:\n  invokeai:\n    token: ${INVOKE_TOKEN}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ={})
        assert str(info.value) == (
            f"{path}:3: generators.invokeai.token: environment variable INVOKE_TOKEN is not set"
            " (give a default with ${INVOKE_TOKEN:-value})"
        )

    def test_unclosed_reference_names_file_line_and_key(self, tmp_path: Path) -> None:
        path = tmp_path / "g.yaml"
        path.write_text("generators:\n  mock:\n    label: ok\n    x: ${FOO\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ={"FOO": "set"})
        assert str(info.value) == (
            f"{path}:4: generators.mock.x: '${{' without a closing '}}' "
            "(write $${ for a literal ${)"
        )

    def test_quoted_and_plain_whole_references(self) -> None:
        text = "generators:\n  m:\n    a: ${N}\n    b: '${N}'\n    c:\n    - ${N}\n    - x${N}\n"
        cfg = parse_config(text, environ={"N": "2"})
        assert cfg.generators["m"] == {"a": 2, "b": "2", "c": [2, "x2"]}

    def test_errors_name_the_line_of_their_key(self) -> None:
        text = "default_generator: 5\ngenerators:\n  mock:\n    delay: 1\n"
        with pytest.raises(ConfigError, match=r"^x.yaml:1: default_generator: must be"):
            parse_config(text, "x.yaml")
        cfg = parse_config(text.replace("5", "mock"), "x.yaml")
        assert cfg.lines.get("generators.mock.delay") == 4
        assert cfg.lines.get("generators.none") is None
        assert str(cfg.error("must be 0 or more", "generators.mock.delay")) == (
            "x.yaml:4: generators.mock.delay: must be 0 or more"
        )

    def test_an_alias_bomb_is_refused_at_once(self, tmp_path: Path) -> None:
        lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for prev, name in zip("abcdefgh", "bcdefghi"):
            lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        path = tmp_path / "g.yaml"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == (
            f"{path}:7: invalid YAML: aliases expand this to more than 1,000,000 values: "
            "refused as an alias bomb ('billion laughs')"
        )

    def test_an_alias_inside_itself_is_refused(self) -> None:
        with pytest.raises(
            ConfigError, match=r"^x.yaml:2: invalid YAML: an alias refers to a node"
        ):
            parse_config("generators:\n  mock: &m {label: *m}\n", "x.yaml")

    def test_shared_settings_through_aliases_are_fine(self) -> None:
        text = (
            "common: &c {delay: 0, label: SHARED}\n"
            "generators:\n  one: {<<: *c, class: mock}\n  two:\n    <<: *c\n    class: mock\n"
        )
        with pytest.warns(UserWarning, match="unknown top-level key 'common'"):
            cfg = parse_config(text)
        assert cfg.generators["two"] == {"delay": 0, "label": "SHARED", "class": "mock"}

    def test_invalid_yaml_names_file_and_line(self, tmp_path: Path) -> None:
        path = tmp_path / "g.yaml"
        path.write_text("generators:\n  mock: [1, 2\n")
        with pytest.raises(ConfigError, match=rf"^{path}:\d+: invalid YAML"):
            load_config(path)

    def test_not_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match="must be a mapping"):
            parse_config("- a\n- b\n", "x.yaml")

    def test_generators_must_be_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match="generators: must be a mapping"):
            parse_config("generators: [mock]\n", "x.yaml")

    def test_entry_must_be_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match=r"x.yaml:2: generators.mock: must be a mapping"):
            parse_config("generators:\n  mock: 3\n", "x.yaml")

    def test_empty_entry_is_allowed(self) -> None:
        assert parse_config("generators:\n  mock:\n").generators == {"mock": {}}

    def test_empty_file_is_an_empty_config(self) -> None:
        cfg = parse_config("")
        assert cfg.generators == {}
        assert cfg.default_generator is None

    def test_unknown_top_level_key_warns(self) -> None:
        with pytest.warns(UserWarning, match="unknown top-level key 'generator'"):
            parse_config("generator:\n  mock: {}\n", "x.yaml")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="configuration file not found"):
            load_config(tmp_path / "nope.yaml")

    def test_yaml_tags_are_not_executed(self) -> None:
        with pytest.raises(ConfigError, match="invalid YAML"):
            parse_config("generators: !!python/object/apply:os.system ['true']\n")


class TestFindConfig:
    def test_builtin_default_is_mock(self, in_tmp: Path) -> None:
        cfg = find_config()
        assert cfg.path is None
        assert cfg.default_generator == "mock"

    def test_working_directory_file(self, in_tmp: Path) -> None:
        DEFAULT_CONFIG_PATH.parent.mkdir()
        DEFAULT_CONFIG_PATH.write_text("default_generator: here\n")
        assert find_config().default_generator == "here"

    def test_env_beats_working_directory(
        self, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        DEFAULT_CONFIG_PATH.parent.mkdir()
        DEFAULT_CONFIG_PATH.write_text("default_generator: here\n")
        (in_tmp / "env.yaml").write_text("default_generator: env\n")
        monkeypatch.setenv("IMAGEGEN_CONFIG", str(in_tmp / "env.yaml"))
        assert find_config().default_generator == "env"

    def test_explicit_beats_env(self, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (in_tmp / "env.yaml").write_text("default_generator: env\n")
        (in_tmp / "cli.yaml").write_text("default_generator: cli\n")
        monkeypatch.setenv("IMAGEGEN_CONFIG", str(in_tmp / "env.yaml"))
        cfg = find_config(in_tmp / "cli.yaml")
        assert (cfg.default_generator, cfg.origin) == ("cli", "--config")

    def test_user_config_dir(self, in_tmp: Path) -> None:
        folder = user_config_dir()
        folder.mkdir(parents=True)
        (folder / "generators.yaml").write_text("default_generator: user\n")
        cfg = find_config()
        assert (cfg.default_generator, cfg.origin) == ("user", "user config directory")

    def test_env_pointing_nowhere_is_an_error(
        self, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("IMAGEGEN_CONFIG", "missing.yaml")
        with pytest.raises(ConfigError, match=r"missing\.yaml: configuration file not found"):
            find_config()


def test_find_config_records_every_place_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = find_config(environ={})
    assert cfg.path is None
    assert cfg.searched == [
        ConfigPlace("--config", None, "not given"),
        ConfigPlace("$IMAGEGEN_CONFIG", None, "not set"),
        ConfigPlace("working directory", Path("config/generators.yaml"), "not found"),
        ConfigPlace("user config directory", user_config_dir() / "generators.yaml", "not found"),
    ]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "generators.yaml").write_text("generators: {}\n")
    cfg = find_config(environ={})
    assert [p.status for p in cfg.searched] == ["not given", "not set", "used", "not looked at"]
    named = tmp_path / "mine.yaml"
    named.write_text("generators: {}\n")
    cfg = find_config(environ={"IMAGEGEN_CONFIG": str(named)})
    assert cfg.origin == "$IMAGEGEN_CONFIG"
    assert [p.status for p in cfg.searched] == [
        "not given",
        "used",
        "not looked at",
        "not looked at",
    ]
