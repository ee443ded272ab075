"""Settings, the connection check, the auth token, and how the plugin is registered."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import httpx
import pytest
from invokeai_fake import BASE_URL, model_record

from degrees37_imagegen import (
    ConfigError,
    GeneratorError,
    GeneratorRegistry,
    UnknownSettingWarning,
)
from degrees37_imagegen.errors import AuthenticationError
from degrees37_imagegen_invokeai import InvokeAIGenerator

TOKEN = "s3cr3t-t0ken-value"


def test_defaults():
    gen = InvokeAIGenerator()
    assert gen.base_url == "http://localhost:9090"
    assert gen.config["max_wait"] == 600.0
    assert gen.server_setting == "base_url"
    assert "token" in gen.secret_settings
    assert "graph_template" in gen.path_settings


def test_constructor_does_no_network(fake):
    InvokeAIGenerator({"base_url": BASE_URL, "board_name": "b", "style_preset": "Anime"})
    assert fake.calls == []


def test_unknown_setting_is_named_in_a_warning():
    with pytest.warns(UnknownSettingWarning, match="'board'"):
        InvokeAIGenerator({"board": "renders"})


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"base_url": "localhost:9090"}, "base_url", "http(s) URL"),
        ({"base_url": "http://localhost:9090/api/v1"}, "base_url", "without /api"),
        ({"base_url": ""}, "base_url", "URL of the InvokeAI server"),
        ({"max_wait": 0}, "max_wait", "positive number"),
        ({"timeout": "30"}, "timeout", "positive number"),
        ({"poll_interval": -1}, "poll_interval", "positive number"),
        ({"retries": -1}, "retries", "0 or more"),
        ({"steps": 0}, "steps", "above 0"),
        ({"steps": 2.5}, "steps", "whole number"),
        ({"cfg_scale": 0.5}, "cfg_scale", "1 or more"),
        ({"scheduler": "fast"}, "scheduler", "unknown scheduler 'fast'"),
        ({"keep_native_size": "yes"}, "keep_native_size", "true or false"),
        ({"board_name": 5}, "board_name", "must be text"),
        ({"token": ["a"]}, "token", "must be text"),
        ({"default_model": 5}, "default_model", "model key or name"),
        ({"default_model": {"key": "k", "name": "n"}}, "default_model", "missing or not text"),
        ({"graph_template": 3}, "graph_template", "path of a JSON file or a mapping"),
    ],
)
def test_bad_settings_name_the_setting(settings, key, problem):
    with pytest.raises(ConfigError) as caught:
        InvokeAIGenerator(settings)
    assert caught.value.key == key
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"{key}: ")
    assert "\n" not in str(caught.value)


def test_empty_values_mean_not_set():
    # What ${INVOKEAI_TOKEN:-} gives when the variable is unset.
    gen = InvokeAIGenerator(
        {"token": "", "board_name": " ", "default_model": "", "graph_template": ""}
    )
    assert (gen.config["token"], gen.config["board_name"], gen.config["default_model"]) == (
        None,
        None,
        None,
    )
    assert gen._template is None


def test_base_url_is_normalised():
    assert InvokeAIGenerator({"base_url": " http://h:9090/ "}).base_url == "http://h:9090"
    assert InvokeAIGenerator({"base_url": "https://h/invoke/"}).base_url == "https://h/invoke"


def test_connection_check_reads_the_version(fake, make_generator):
    gen = make_generator()
    assert gen.test_connection() is True
    assert gen.server_version == "6.14.2"


def test_connection_check_refuses_the_web_uis_html(fake, make_generator, caplog):
    gen = make_generator(base_url=f"{BASE_URL}/not-invoke")  # every path answers HTML
    with caplog.at_level(logging.WARNING):
        assert gen.test_connection() is False
    assert "text/html, not InvokeAI's JSON" in caplog.text


def test_html_answer_during_generation_points_at_base_url(fake, make_generator):
    gen = make_generator(base_url=f"{BASE_URL}/ui", board_name="renders")
    with pytest.raises(GeneratorError, match="is base_url the root of an InvokeAI server"):
        gen.generate_image("x")


def test_connection_refused_is_false_not_an_exception(fake, make_generator):
    fake.router.route(method="GET", path="/api/v1/app/version").mock(
        side_effect=httpx.ConnectError("[Errno 111] Connection refused")
    )
    assert make_generator().test_connection() is False


def test_token_is_sent_and_never_shown(fake, make_generator, caplog, tmp_path):
    fake.models = [model_record("sdxl-base", "sdxl")]
    seen: list[str | None] = []
    gen = make_generator(default_model="sdxl-base", token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        name = gen.generate_image("x")
        gen.download_image(name, tmp_path / "out.png")
    for call in fake.router.calls:
        seen.append(call.request.headers.get("authorization"))
    assert set(seen) == {f"Bearer {TOKEN}"}
    assert TOKEN not in repr(gen)
    assert TOKEN not in str(gen.info())
    assert TOKEN not in caplog.text


def test_rejected_token_is_an_authentication_error_without_the_token(fake, make_generator):
    # No capture has a 401; its detail is InvokeAI's own (auth_dependencies.py).
    # A route with the same pattern replaces the fake's, in place.
    fake.router.route(method="GET", path="/api/v2/models/").mock(
        return_value=httpx.Response(401, json={"detail": "Invalid or expired authentication token"})
    )
    gen = make_generator(default_model="x", token=TOKEN)
    with pytest.raises(AuthenticationError) as caught:
        gen.generate_image("x")
    assert caught.value.status == 401
    assert caught.value.generator == "invokeai"  # named by the core, not by hand
    assert "check the token setting" in str(caught.value)
    assert "401" in str(caught.value)
    assert TOKEN not in (caught.value.body or "")
    assert TOKEN not in str(caught.value)


def test_close_closes_the_client_and_a_later_call_reopens(fake, make_generator):
    gen = make_generator()
    assert gen.test_connection()
    client = gen._api.client()
    gen.close()
    assert client.is_closed
    assert gen.test_connection()
    with gen:
        pass
    assert gen._api._client is None


def test_registered_as_invokeai_without_importing_the_generator():
    code = textwrap.dedent(
        """
        import sys
        from degrees37_imagegen import GeneratorRegistry
        registry = GeneratorRegistry(config={"generators": {}})
        registry._ensure_discovered()
        assert "invokeai" in registry._registrations, registry._registrations
        assert "degrees37_imagegen_invokeai.generator" not in sys.modules
        assert "httpx" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_registry_builds_it_from_config(write_config, fake):
    path = write_config(
        f"""
        generators:
          studio:
            plugin: invokeai
            base_url: {BASE_URL}
            board_name: renders
        """
    )
    gen = GeneratorRegistry(path).get_generator("studio")
    assert isinstance(gen, InvokeAIGenerator)
    assert gen.name == "studio"
    assert gen.config["board_name"] == "renders"
    gen.close()


def test_graph_template_path_is_relative_to_the_config_file(write_config, tmp_path, blank_template):
    import json

    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "blank.json").write_text(json.dumps(blank_template))
    path = write_config(
        """
        generators:
          blank:
            plugin: invokeai
            graph_template: graphs/blank.json
        """
    )
    gen = GeneratorRegistry(path).get_generator("blank")
    assert gen.config["graph_template"] == str(tmp_path / "graphs" / "blank.json")
    assert gen._template is not None
    assert gen._template.output_node == "blank"
