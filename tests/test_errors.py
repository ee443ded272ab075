from __future__ import annotations

from pathlib import Path

import pytest

from degrees37_imagegen import (
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorNotFoundError,
    GeneratorTimeoutError,
    InvalidRequestError,
)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (GeneratorConnectionError, ConnectionError),
        (GeneratorTimeoutError, TimeoutError),
        (InvalidRequestError, ValueError),
        (ConfigError, ValueError),
    ],
)
def test_errors_are_generator_errors_and_their_builtin(cls: type, builtin: type) -> None:
    assert issubclass(cls, GeneratorError)
    assert issubclass(cls, builtin)


def test_limit_error_carries_retry_after() -> None:
    err = GeneratorLimitError("queue full", retry_after=12)
    assert err.retry_after == 12
    assert str(err) == "queue full"
    assert GeneratorLimitError("x").retry_after is None


def test_not_found_lists_names_sorted() -> None:
    err = GeneratorNotFoundError("x", ["b", "a", "b"])
    assert str(err) == "unknown generator 'x'; available: a, b"
    assert "no generator plugin is installed" in str(GeneratorNotFoundError("x", []))


def test_config_error_formats_file_line_and_key() -> None:
    err = ConfigError("must be positive", path=Path("c.yaml"), key="generators.m.delay", line=3)
    assert str(err) == "c.yaml:3: generators.m.delay: must be positive"
    assert str(ConfigError("bad")) == "bad"


def test_config_error_located_adds_context() -> None:
    err = ConfigError("must be positive", key="delay").located(
        path="c.yaml", key_prefix="generators.m", line=9
    )
    assert str(err) == "c.yaml:9: generators.m.delay: must be positive"
