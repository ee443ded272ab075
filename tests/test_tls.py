from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from degrees37_imagegen.tls import http_verify, ssl_context, ssl_context_for


def test_one_context_per_setting_for_every_client() -> None:
    assert ssl_context(True) is ssl_context(True)
    assert ssl_context(True).verify_mode is ssl.CERT_REQUIRED
    assert ssl_context(True).check_hostname
    unchecked = ssl_context(False)
    assert unchecked is ssl_context(False)
    assert unchecked.verify_mode is ssl.CERT_NONE
    assert not unchecked.check_hostname


def test_the_ca_file_of_the_environment_is_used_as_httpx_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        ssl_context(True)
    monkeypatch.delenv("SSL_CERT_FILE")
    assert ssl_context(True).verify_mode is ssl.CERT_REQUIRED


def test_a_plain_http_client_reads_no_ca_bundle() -> None:
    assert ssl_context_for("http://127.0.0.1:9090") is None
    assert ssl_context_for("ws://h:8188/ws") is None
    assert ssl_context_for("https://h") is ssl_context(True)
    assert ssl_context_for("HTTPS://h", verify=False) is ssl_context(False)
    assert ssl_context_for("wss://h/ws", verify=False) is ssl_context(False)


def test_a_plain_http_client_trusts_no_tls_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    plain = http_verify("http://127.0.0.1:9090")
    assert plain is http_verify("http://gpu:8188", verify=False)
    assert plain.verify_mode is ssl.CERT_REQUIRED
    assert plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0  # no CA bundle read
    assert http_verify("https://h") is ssl_context(True)
    assert http_verify("https://h", verify=False) is ssl_context(False)
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy:3128")  # reached over TLS: checked
    assert http_verify("http://127.0.0.1:9090") is ssl_context(True)
