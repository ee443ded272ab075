from __future__ import annotations

import pytest

from degrees37_imagegen import redact
from degrees37_imagegen.redaction import REDACTED, is_secret_key, redact_text, redact_url


def test_secret_keys() -> None:
    for key in ("token", "api_key", "API-KEY", "password", "Authorization", "auth_token"):
        assert is_secret_key(key)
    for key in ("base_url", "steps", "prompt", "board_name"):
        assert not is_secret_key(key)


def test_nested_and_listed() -> None:
    data = {"headers": {"Authorization": "Bearer abc", "X-Trace": "1"}, "api_key": "k", "n": 1}
    assert redact(data) == {
        "headers": {"Authorization": REDACTED, "X-Trace": "1"},
        "api_key": REDACTED,
        "n": 1,
    }
    assert redact({"creds": "x"}, extra={"creds"}) == {"creds": REDACTED}


def test_everything_below_a_secret_key_is_hidden() -> None:
    assert redact({"auth": {"user": "u", "pass": "p"}}) == {
        "auth": {"user": REDACTED, "pass": REDACTED}
    }


def test_empty_secret_stays_visible_as_unset() -> None:
    assert redact({"token": None, "api_key": ""}) == {"token": None, "api_key": ""}


def test_url_passwords() -> None:
    assert redact_url("https://bob:hunter2@h:8443/x?y=1") == "https://bob:***@h:8443/x?y=1"
    assert redact_url("http://h:1/") == "http://h:1/"
    assert redact_url("https://sk-123@proxy/comfy") == "https://***@proxy/comfy"
    assert redact({"servers": ["http://a:pw@h"]}) == {"servers": ["http://a:***@h"]}


def test_redact_text_for_log_lines() -> None:
    line = (
        'HTTP Request: GET http://bob:hunter2@gpu:9090/api?token=abc123&x=1 "HTTP/1.1 200 OK" '
        "Authorization: Bearer eyJhbGciOi.x-y_z"
    )
    out = redact_text(line)
    for secret in ("hunter2", "abc123", "eyJhbGciOi"):
        assert secret not in out
    assert "http://bob:***@gpu:9090/api?token=***&x=1" in out


def test_redact_text_hides_secret_header_lines() -> None:
    text = "> X-Api-Key: sekrit-1\n> Host: h\n> Authorization: Basic dXNlcjpwdw==\n> Cookie: s=2"
    out = redact_text(text)
    for secret in ("sekrit-1", "dXNlcjpwdw==", "s=2"):
        assert secret not in out
    assert "> Host: h" in out


def test_redacting_logger_hides_header_arguments(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from degrees37_imagegen.redaction import RedactingLogger

    log = RedactingLogger(logging.getLogger("test.ws"), {"X-Custom"})
    with caplog.at_level(logging.DEBUG, logger="test.ws"):
        log.debug("> %s: %s", "X-Custom", "value-1")
        log.debug("> %s: %s", "Host", "example")
        log.debug("> %s: %s", "authorization", "Bearer tok-2")
    text = caplog.text
    assert "value-1" not in text
    assert "tok-2" not in text
    assert "> Host: example" in text
