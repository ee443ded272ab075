from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen import BaseImageGenerator, GeneratorConnectionError
from degrees37_imagegen.health import check_generator, probe_server, server_address

log = logging.getLogger("some_plugin")


class Fake(BaseImageGenerator):
    default_settings = {"url": None, "answer": True, "log": None, "raise": None}
    server_setting = "url"

    def test_connection(self) -> bool:
        if self.config["log"]:
            log.info(self.config["log"])
        if self.config["raise"] is not None:
            raise self.config["raise"]
        return bool(self.config["answer"])

    def generate_image(self, prompt: str, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        raise NotImplementedError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8188", ("127.0.0.1", 8188)),
        ("http://localhost:9090/", ("localhost", 9090)),
        ("https://user:secret@gpu.example", ("gpu.example", 443)),
        ("ws://gpu:8188/ws", ("gpu", 8188)),
        ("gpu", None),
        ("http://[::1", None),
    ],
)
def test_server_address(text: str, expected: tuple[str, int] | None) -> None:
    assert server_address(text) == expected


def test_probe_refused_and_open() -> None:
    port = _closed_port()
    assert probe_server(f"127.0.0.1:{port}") == (False, f"connection refused at 127.0.0.1:{port}")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        assert probe_server(f"http://127.0.0.1:{open_port}") == (
            True,
            f"127.0.0.1:{open_port} answers",
        )


def test_ready() -> None:
    assert check_generator(Fake({})) == (True, "ready")


def test_error_raised_is_the_reason() -> None:
    gen = Fake({"raise": GeneratorConnectionError("cannot connect to http://gpu:9090")})
    assert check_generator(gen) == (False, "cannot connect to http://gpu:9090")
    odd = Fake({"raise": ValueError("bad")})
    assert check_generator(odd) == (False, "test_connection() failed: ValueError: bad")


def test_dead_server_is_probed() -> None:
    port = _closed_port()
    gen = Fake({"url": f"http://127.0.0.1:{port}", "answer": False, "log": "not usable"})
    assert check_generator(gen) == (False, f"connection refused at 127.0.0.1:{port}")


def test_server_up_but_not_ready_gives_what_the_plugin_logged() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        gen = Fake({"url": f"127.0.0.1:{port}", "answer": False, "log": "did not answer a version"})
        assert check_generator(gen) == (False, "did not answer a version")
        quiet = Fake({"url": f"127.0.0.1:{port}", "answer": False})
        assert check_generator(quiet) == (
            False,
            f"127.0.0.1:{port} answers, but test_connection() says it is not ready",
        )


def test_no_server_no_log() -> None:
    assert check_generator(Fake({"answer": False})) == (
        False,
        "test_connection() says it is not ready",
    )
    logged = Fake({"answer": False, "log": "token at https://u:hunter2@x/ refused"})
    ok, reason = check_generator(logged)
    assert not ok
    assert "hunter2" not in reason


def test_root_logger_level_is_restored() -> None:
    root = logging.getLogger()
    before = root.level
    check_generator(Fake({"answer": False, "log": "x"}))
    assert root.level == before
