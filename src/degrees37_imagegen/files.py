"""Writing images so that a final path holds a whole image or nothing.

Everything is written to a temporary file beside the destination, checked, and moved into
place with :func:`os.replace`, which is atomic on the same file system.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .errors import GeneratorError, OutputError

__all__ = [
    "METADATA_PREFIX",
    "add_png_text",
    "atomic_path",
    "read_png_text",
    "slugify",
    "verify_image",
    "write_image_atomically",
]

#: PNG text keys written by this library start with this, so they never clobber the
#: server's own (ComfyUI writes ``prompt`` and ``workflow``; InvokeAI ``invokeai_metadata``).
METADATA_PREFIX = "imagegen:"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def slugify(text: str, max_length: int = 48) -> str:
    """A short, file-name-safe ``text``: ``"A cat, at night!"`` is ``a-cat-at-night``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "image"


@contextlib.contextmanager
def atomic_path(final_path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; move it into place if the block succeeds.

    If the block raises, the temporary file is removed and ``final_path`` is untouched.
    Raises :class:`OutputError` naming the path when nothing can be written there.
    """
    final = Path(final_path)
    if final.is_dir():
        raise OutputError(f"cannot write {final}: it is a folder", final)
    if final.parent.exists() and not final.parent.is_dir():
        raise OutputError(f"cannot write {final}: {final.parent} is not a folder", final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}", final) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}", final) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def verify_image(path: str | Path) -> tuple[str, tuple[int, int]]:
    """Check that ``path`` holds a whole, decodable image; return its format and size.

    Raises :class:`GeneratorError` naming the file when it is truncated or not an image.
    """
    from PIL import Image  # Pillow is imported only when an image is actually checked.

    try:
        with Image.open(path) as img:
            fmt, size = str(img.format), img.size
            if fmt == "PNG":
                img.verify()  # walks every chunk and checks its CRC, up to IEND
            else:
                img.load()
    except Exception as exc:
        raise GeneratorError(f"{path}: not a whole image ({exc})") from exc
    return fmt, size


def write_image_atomically(
    output_path: str | Path, data: bytes | Iterable[bytes]
) -> tuple[str, tuple[int, int]]:
    """Write image bytes (or an iterable of chunks, e.g. a streamed response) to
    ``output_path`` through a temporary file, verify them, and move them into place.

    Returns what :func:`verify_image` found.
    """
    with atomic_path(output_path) as tmp:
        with open(tmp, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                for chunk in data:
                    fh.write(chunk)
        return verify_image(tmp)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def add_png_text(data: bytes, text: Mapping[str, str], prefix: str = METADATA_PREFIX) -> bytes:
    """Return PNG ``data`` with ``text`` added as UTF-8 ``iTXt`` chunks before ``IEND``.

    Keys get ``prefix``; the image data and the chunks already there are kept byte for byte,
    so this costs no re-encoding.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise GeneratorError("cannot add PNG metadata: the image is not a PNG")
    iend = data.rfind(b"IEND")
    if iend < 12:
        raise GeneratorError("cannot add PNG metadata: the PNG has no IEND chunk")
    iend -= 4  # the chunk starts with its 4-byte length
    extra = b"".join(
        _chunk(
            b"iTXt",
            (prefix + key)[:79].encode("latin-1", "replace")
            + b"\x00\x00\x00\x00\x00"
            + str(value).encode("utf-8"),
        )
        for key, value in text.items()
    )
    return data[:iend] + extra + data[iend:]


def read_png_text(path: str | Path) -> dict[str, str]:
    """All text chunks of a PNG file (``tEXt``, ``zTXt`` and ``iTXt``) as a dict."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
