"""Writing images so that a final path holds a whole image or nothing.

Everything is written to a temporary file beside the destination, checked, and moved into
place with :func:`os.replace`, which is atomic on the same file system.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from .errors import GeneratorError, IncompleteImageError, OutputError

__all__ = [
    "METADATA_PREFIX",
    "add_png_text",
    "atomic_file",
    "atomic_path",
    "check_output",
    "output_format",
    "read_png_text",
    "slugify",
    "verify_image",
    "write_image",
    "write_image_atomically",
]

#: PNG text keys written by this library start with this, so they never clobber the
#: server's own (ComfyUI writes ``prompt`` and ``workflow``; InvokeAI ``invokeai_metadata``).
METADATA_PREFIX = "imagegen:"

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The 12 bytes every PNG ends with: a zero-length IEND chunk and its CRC.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def as_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` (itself when it is one: making one again parses
    it again)."""
    return path if isinstance(path, Path) else Path(path)


def slugify(text: str, max_length: int = 48) -> str:
    """A short, file-name-safe ``text``: ``"A cat, at night!"`` is ``a-cat-at-night``."""
    slug = _NOT_SLUG.sub("-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "image"


@contextlib.contextmanager
def atomic_path(final_path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; move it into place if the block succeeds.

    If the block raises, the temporary file is removed and ``final_path`` is untouched.
    Raises :class:`OutputError` naming the path when nothing can be written there.
    """
    with atomic_file(final_path, suffix) as (tmp, fh):
        fh.close()
        yield tmp


@contextlib.contextmanager
def atomic_file(final_path: str | Path, suffix: str = ".part") -> Iterator[tuple[Path, BinaryIO]]:
    """:func:`atomic_path` that also yields the temporary file, open for binary writing
    (closed before it is moved into place): the file is created once, not created and then
    opened again."""
    final = as_path(final_path)
    if final.is_dir():
        raise OutputError(f"cannot write {final}: it is a folder", final)
    try:
        tmp, fh = _create_beside(final, suffix)
    except OSError as first:
        # Only now look at the folder (most images go to one that is there): say what is
        # wrong with it, or make it.
        if final.parent.exists() and not final.parent.is_dir():
            raise OutputError(
                f"cannot write {final}: {final.parent} is not a folder", final
            ) from first
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp, fh = _create_beside(final, suffix)
        except OSError as exc:
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}", final) from exc
    try:
        with fh:
            yield tmp, fh
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}", final) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _create_beside(final: Path, suffix: str) -> tuple[Path, BinaryIO]:
    """Create a new temporary file beside ``final``; return its path and the file, open
    for binary writing.

    Unlike :func:`tempfile.mkstemp` (always mode 0600), the file is created with mode 0666
    less the umask, as any other file the user writes: 0644 under the usual umask 022, so
    that images in a shared folder are readable by the group.
    """
    for _ in range(100):
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, "wb")
    raise FileExistsError(f"no free temporary name beside {final}")


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


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
    return write_image(output_path, data)


#: Image formats written by file name extension (no extension: PNG).
FORMATS_BY_SUFFIX = {"": "PNG", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def check_output(path: str | Path) -> str:
    """Raise :class:`OutputError` now if an image could not be written at ``path``; else
    return its format (see :func:`output_format`).

    Called before an image is made, so that a path under a file or an unknown extension
    costs no work on a server.
    """
    final = as_path(path)
    if _is_dir(final):
        raise OutputError(f"cannot write {final}: it is a folder", final)
    for parent in final.parents:
        try:
            mode = os.stat(parent).st_mode  # one look at each folder (a batch asks per image)
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            raise OutputError(f"cannot write {final}: {parent} is not a folder", final)
        break
    return output_format(final)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def output_format(path: str | Path) -> str:
    """The image format that ``path``'s extension names (``PNG``, ``JPEG`` or ``WEBP``).

    Raises :class:`OutputError` for an extension of another kind, rather than writing PNG
    bytes under a name that says otherwise.
    """
    final = as_path(path)
    fmt = FORMATS_BY_SUFFIX.get(final.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"cannot write {final}: {final.suffix!r} is not an image format this writes "
            "(use .png, .jpg or .webp)",
            final,
        )
    return fmt


def write_image(
    output_path: str | Path,
    data: bytes | Iterable[bytes],
    *,
    text: Mapping[str, str] | None = None,
    fmt: str | None = None,
) -> tuple[str, tuple[int, int]]:
    """Stream an image into ``output_path``, whole or not at all; return its format and size.

    ``data`` is the image's bytes or an iterable of chunks (a streamed download), written
    once into a temporary file beside ``output_path``. A PNG gets ``text`` as ``iTXt``
    chunks (keys prefixed with :data:`METADATA_PREFIX`) in the same pass: they go before
    the closing ``IEND`` chunk, which is always a PNG's last 12 bytes, so only those bytes
    are held back and the image is never read back or held in memory. The file is then
    verified and moved into place; errors name ``output_path``, never the temporary file.

    ``fmt`` (``PNG``, ``JPEG``, ``WEBP``) converts an image of another format into it,
    with ``text`` in the format's own metadata (EXIF ``ImageDescription`` as JSON for JPEG
    and WebP); that conversion holds the image in memory.
    """
    final = as_path(output_path)
    with atomic_file(final) as (tmp, fh):
        writer = TailWriter(fh)
        for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
            writer.write(chunk)
        writer.close(text)
        fh.close()
        return finish_image(tmp, final, fmt, text)


class TailWriter:
    """Writes chunks to ``fh`` but for the last 12 bytes, where a PNG's ``IEND`` chunk is,
    so that text chunks can go in before it at :meth:`close` (nothing is read back)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.head = b""
        self.tail = b""

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Write ``chunk``, holding back the (new) last 12 bytes."""
        if not chunk:
            return
        if len(self.head) < 8:
            self.head = (self.head + bytes(chunk[: 8 - len(self.head)]))[:8]
        if len(chunk) >= len(_PNG_IEND):
            self.fh.write(self.tail)
            self.fh.write(chunk[: -len(_PNG_IEND)])
            self.tail = bytes(chunk[-len(_PNG_IEND) :])
        else:
            joined = self.tail + bytes(chunk)
            self.fh.write(joined[: -len(_PNG_IEND)])
            self.tail = joined[-len(_PNG_IEND) :]

    def close(self, text: Mapping[str, str] | None, *, png: bool | None = None) -> None:
        """Write ``text`` as ``iTXt`` chunks if this is a whole PNG (``png``: known from
        elsewhere, else judged by its signature and end), then the held-back bytes."""
        whole = self.head.startswith(_PNG_SIGNATURE) if png is None else png
        if text and whole and self.tail == _PNG_IEND:
            self.fh.write(_text_chunks(text, METADATA_PREFIX))
        self.fh.write(self.tail)


def finish_image(
    tmp: Path,
    final: Path,
    fmt: str | None,
    text: Mapping[str, str] | None,
    found: tuple[str, tuple[int, int]] | None = None,
) -> tuple[str, tuple[int, int]]:
    """Verify the image written to ``tmp`` (unless ``found`` says what it is already) and
    convert it to ``fmt``; errors name ``final``, never the temporary file."""
    if found is None:
        try:
            found = verify_image(tmp)
        except GeneratorError as exc:
            cause = exc.__cause__ or exc
            raise IncompleteImageError(
                f"cannot save {final}: the image received is not whole ({cause})",
                work="ran",
            ) from exc
    if fmt is not None and found[0] != fmt:
        _convert(tmp, fmt, text)
        return fmt, found[1]
    return found


def _convert(path: Path, fmt: str, text: Mapping[str, str] | None) -> None:
    """Re-encode the image at ``path`` in place as ``fmt``, with ``text`` as its metadata."""
    import json

    from PIL import Image, PngImagePlugin

    with Image.open(path) as img:
        img.load()
        options: dict[str, object] = {}
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            for key, value in (text or {}).items():
                info.add_itxt(METADATA_PREFIX + key, str(value))
            options["pnginfo"] = info
        else:
            if img.mode not in ("RGB", "L") and fmt == "JPEG":
                img = img.convert("RGB")
            if text:
                exif = Image.Exif()
                exif[0x010E] = json.dumps({METADATA_PREFIX + k: v for k, v in text.items()})
                options["exif"] = exif.tobytes()
            options["quality"] = 95
        with open(path, "wb") as fh:
            img.save(fh, fmt, **options)


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
    return data[:iend] + _text_chunks(text, prefix) + data[iend:]


def _text_chunks(text: Mapping[str, str], prefix: str) -> bytes:
    """``text`` as UTF-8 ``iTXt`` chunks, keys prefixed."""
    return b"".join(
        _chunk(
            b"iTXt",
            (prefix + key)[:79].encode("latin-1", "replace")
            + b"\x00\x00\x00\x00\x00"
            + str(value).encode("utf-8"),
        )
        for key, value in text.items()
    )


def read_png_text(path: str | Path) -> dict[str, str]:
    """All text chunks of a PNG file (``tEXt``, ``zTXt`` and ``iTXt``) as a dict."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
