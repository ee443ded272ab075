from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from degrees37_imagegen.tls import ssl_context


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
