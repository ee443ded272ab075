from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from degrees37_imagegen import (
    GeneratorError,
    OutputError,
    add_png_text,
    atomic_file,
    atomic_path,
    output_format,
    read_png_text,
    slugify,
    verify_image,
    write_image,
    write_image_atomically,
)


def png_bytes(size: tuple[int, int] = (16, 8), text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_atomic_path_moves_into_place(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "a.png"
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"x")
        assert not final.exists()
    assert final.read_bytes() == b"x"
    assert list(final.parent.iterdir()) == [final]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "a.png"
    final.write_bytes(b"old")

    def write_then_fail() -> None:
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert final.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_file_writes_the_file_it_created(tmp_path: Path) -> None:
    final = tmp_path / "new" / "deeper" / "a.png"  # folders are made when missing
    with atomic_file(final) as (tmp, fh):
        fh.write(b"bytes")
        assert tmp.parent == final.parent
        assert not final.exists()
    assert final.read_bytes() == b"bytes"
    assert list(final.parent.iterdir()) == [final]


def test_atomic_file_names_what_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    in_the_way = {
        "file/a.png": r"cannot write .*a\.png: .*file is not a folder",
        "dir.png": r"dir\.png: it is a folder",
        "file/deeper/b.png": r"cannot write .*b\.png: Not a directory",
    }
    (tmp_path / "dir.png").mkdir()
    for name, message in in_the_way.items():
        with pytest.raises(OutputError, match=message), atomic_file(tmp_path / name):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file"]


def test_truncated_image_is_never_written(tmp_path: Path) -> None:
    data = png_bytes((300, 300))
    with pytest.raises(GeneratorError, match=r"t\.png: the image received is not whole") as info:
        write_image_atomically(tmp_path / "t.png", data[: len(data) // 2])
    assert ".part" not in str(info.value)  # the output file is named, never the temporary one
    assert list(tmp_path.iterdir()) == []


def test_images_are_written_with_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "a.png", png_bytes((4, 4)))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644


def test_metadata_is_added_while_streaming(tmp_path: Path) -> None:
    data = png_bytes((64, 64))
    chunks = [data[i : i + 5] for i in range(0, len(data), 5)]  # pieces shorter than IEND
    write_image(tmp_path / "a.png", iter(chunks), text={"prompt": "a fox"})
    assert read_png_text(tmp_path / "a.png")["imagegen:prompt"] == "a fox"
    assert verify_image(tmp_path / "a.png") == ("PNG", (64, 64))


@pytest.mark.parametrize(("name", "fmt"), [("a.jpg", "JPEG"), ("a.webp", "WEBP")])
def test_the_extension_names_the_format(tmp_path: Path, name: str, fmt: str) -> None:
    write_image(tmp_path / name, png_bytes((8, 8)), text={"prompt": "a fox"}, fmt=fmt)
    assert verify_image(tmp_path / name)[0] == fmt


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"a\.gif: '\.gif' is not an image format"):
        output_format(tmp_path / "a.gif")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("<html>")
    with pytest.raises(GeneratorError, match=r"x\.png: not a whole image"):
        verify_image(tmp_path / "x.png")


def test_write_from_chunks(tmp_path: Path) -> None:
    data = png_bytes((20, 10))
    fmt, size = write_image_atomically(tmp_path / "c.png", iter([data[:10], data[10:]]))
    assert (fmt, size) == ("PNG", (20, 10))


def test_add_png_text_keeps_server_metadata(tmp_path: Path) -> None:
    original = png_bytes(text={"prompt": '{"3": {}}', "workflow": "{}"})
    out = add_png_text(original, {"prompt": "a cat", "seed": "7", "note": "naïve ✓"})
    (tmp_path / "m.png").write_bytes(out)
    text = read_png_text(tmp_path / "m.png")
    assert text["prompt"] == '{"3": {}}'  # the server's own chunk is untouched
    assert text["imagegen:prompt"] == "a cat"
    assert text["imagegen:seed"] == "7"
    assert text["imagegen:note"] == "naïve ✓"
    verify_image(tmp_path / "m.png")


def test_add_png_text_rejects_non_png() -> None:
    with pytest.raises(GeneratorError, match="not a PNG"):
        add_png_text(b"GIF89a", {"a": "b"})


def test_slugify() -> None:
    assert slugify("  Hello, World!  ") == "hello-world"
    assert slugify("!!!") == "image"
    assert len(slugify("word " * 50)) <= 48


def test_output_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write .*: it is a folder"):
        write_image_atomically(tmp_path, png_bytes())


def test_output_under_a_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "a.png"
    with pytest.raises(OutputError) as info:
        write_image_atomically(target, png_bytes())
    assert str(info.value).startswith(f"cannot write {target}: ")
    assert isinstance(info.value, OSError)
    assert info.value.path == target
