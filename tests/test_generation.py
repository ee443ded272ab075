from __future__ import annotations

from pathlib import Path

import pytest

from degrees37_imagegen import (
    GeneratorError,
    GeneratorRegistry,
    Progress,
    generate_to_file,
    read_png_text,
)


def test_generate_to_file_writes_request_metadata(tmp_path: Path) -> None:
    gen = GeneratorRegistry({}).get_generator("mock")
    events: list[Progress] = []
    result = generate_to_file(
        gen,
        tmp_path / "out" / "a.png",
        "a red fox",
        "blurry",
        320,
        200,
        seed=9,
        on_progress=events.append,
    )
    assert result.path.is_file()
    assert result.size == (320, 200)
    text = read_png_text(result.path)
    assert text["imagegen:prompt"] == "a red fox"
    assert text["imagegen:negative_prompt"] == "blurry"
    assert text["imagegen:seed"] == "9"
    assert (text["imagegen:width"], text["imagegen:height"]) == ("320", "200")
    assert text["imagegen:generator"] == "mock"
    assert text["imagegen:model"] == "mock"
    assert [e.stage for e in events][-2:] == ["downloading", "done"]
    assert set(result.timings) == {"generate", "download", "total"}


def test_random_seed_is_recorded(tmp_path: Path) -> None:
    gen = GeneratorRegistry({}).get_generator("mock")
    result = generate_to_file(gen, tmp_path / "a.png", "x", width=64, height=64, seed=-1)
    assert result.info.seed >= 0
    assert read_png_text(result.path)["imagegen:seed"] == str(result.info.seed)


def test_failure_leaves_no_file(tmp_path: Path) -> None:
    gen = GeneratorRegistry({}).get_generator("mock", {"fail_rate": 1})
    with pytest.raises(GeneratorError, match="simulated generation failure"):
        generate_to_file(gen, tmp_path / "a.png", "x", width=64, height=64)
    assert list(tmp_path.iterdir()) == []
