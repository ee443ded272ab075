"""Writing an image that arrives as async chunks: streamed into place, checked as it streams.

The async twin of :func:`~degrees37_imagegen.files.write_image`: the same temporary file
beside the target, the same metadata added in the same pass, the same ``os.replace``; a PNG
is checked while it streams (signature, every chunk's CRC, ``IEND`` last: what Pillow's
``verify()`` checks), so that the file just written is never read back.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from .errors import IncompleteImageError
from .files import _PNG_SIGNATURE, as_path, atomic_file

__all__ = ["awrite_image"]


class _PNGCheck:
    """Checks a PNG as it streams past: signature, every chunk's CRC, ``IEND`` last.

    What ``PIL``'s ``verify()`` checks, without reading the file back.
    """

    def __init__(self) -> None:
        self.state = "signature"
        self.need = 8
        self.head = bytearray()
        self.kind = b""
        self.crc = 0
        self.size: tuple[int, int] | None = None
        self.ended = False
        self.bad = False
        #: The stream started with PNG's signature.
        self.png = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n and not self.bad:
            if self.ended:
                self.bad = True  # bytes after IEND
                return
            take = min(self.need, n - i)
            part = view[i : i + take]
            i += take
            self.need -= take
            if self.state == "data":
                self.crc = zlib.crc32(part, self.crc)
                if self.kind == b"IHDR" and len(self.head) < 8:
                    self.head += part[: 8 - len(self.head)]
                if self.need == 0:
                    self._data_done()
                continue
            self.head += part
            if self.need:
                continue
            self._header_done()

    def _data_done(self) -> None:
        if self.kind == b"IHDR" and len(self.head) >= 8:
            self.size = struct.unpack(">II", bytes(self.head[:8]))
        self.state, self.need, self.head = "crc", 4, bytearray()

    def _header_done(self) -> None:
        head = bytes(self.head)
        self.head = bytearray()
        if self.state == "signature":
            self.png = head == _PNG_SIGNATURE
            self.bad = not self.png
            self.state, self.need = "header", 8
        elif self.state == "header":
            length, self.kind = struct.unpack(">I", head[:4])[0], head[4:]
            if self.size is None and self.kind != b"IHDR":
                self.bad = True
            self.crc = zlib.crc32(self.kind)
            if length:
                self.state, self.need = "data", length
            else:
                self.state, self.need = "crc", 4
        else:  # crc
            if struct.unpack(">I", head)[0] != self.crc & 0xFFFFFFFF:
                self.bad = True
            self.ended = self.kind == b"IEND"
            self.state, self.need = "header", 8

    @property
    def whole(self) -> bool:
        """Whether a whole PNG went past."""
        return self.ended and not self.bad and self.size is not None


async def awrite_image(
    output_path: str | Path,
    data: bytes | AsyncIterator[bytes],
    *,
    text: Mapping[str, str] | None = None,
    fmt: str | None = None,
) -> tuple[str, tuple[int, int]]:
    """:func:`~degrees37_imagegen.write_image` for async chunks: streamed into a temporary
    file beside ``output_path``, ``text`` added in the same pass, moved into place.

    A PNG is checked as it streams (not read back); other formats are checked by Pillow.
    """
    from .files import TailWriter, finish_image

    final = as_path(output_path)
    check = _PNGCheck()
    with atomic_file(final) as (tmp, fh):
        writer = TailWriter(fh)
        async for chunk in _as_chunks(data):
            check.feed(chunk)
            writer.write(chunk)
        writer.close(text, png=check.whole)
        fh.close()
        if check.png and not (check.whole and check.size is not None):
            raise IncompleteImageError(  # a PNG that failed the stream's checks
                f"cannot save {final}: the PNG received is not whole", work="ran"
            )
        found = ("PNG", check.size) if check.whole and check.size is not None else None
        return finish_image(tmp, final, fmt, text, found)


async def _as_chunks(data: bytes | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        yield data
        return
    async for chunk in data:
        yield chunk
