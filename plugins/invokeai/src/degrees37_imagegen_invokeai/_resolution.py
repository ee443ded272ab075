"""Which size to generate at, and how to bring the result back to the size that was asked for.

SDXL was trained on about one megapixel, in buckets whose sides are multiples of 64. Asked for
another size, it repeats subjects and loses composition, so an SDXL request is generated at
the training bucket with the closest aspect ratio and then scaled and centre-cropped to the
requested size after download. Other models are generated at the requested size rounded to
the multiple of 8 their latent space needs.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "SDXL_RESOLUTIONS",
    "fit_image",
    "fit_image_file",
    "as_size",
    "fit_png",
    "fit_target",
    "round_to_multiple",
    "sdxl_resolution",
]

#: SDXL's training buckets (width, height), from the SDXL paper (Podell et al. 2023,
#: appendix I): all about one megapixel, all multiples of 64, portrait and landscape.
SDXL_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (512, 2048),
    (512, 1984),
    (512, 1920),
    (512, 1856),
    (576, 1792),
    (576, 1728),
    (576, 1664),
    (640, 1600),
    (640, 1536),
    (704, 1472),
    (704, 1408),
    (704, 1344),
    (768, 1344),
    (768, 1280),
    (832, 1216),
    (832, 1152),
    (896, 1152),
    (896, 1088),
    (960, 1088),
    (960, 1024),
    (1024, 1024),
    (1024, 960),
    (1088, 960),
    (1088, 896),
    (1152, 896),
    (1152, 832),
    (1216, 832),
    (1280, 768),
    (1344, 768),
    (1344, 704),
    (1408, 704),
    (1472, 704),
    (1536, 640),
    (1600, 640),
    (1664, 576),
    (1728, 576),
    (1792, 576),
    (1856, 512),
    (1920, 512),
    (1984, 512),
    (2048, 512),
)


def sdxl_resolution(width: int, height: int) -> tuple[int, int]:
    """The SDXL training resolution whose aspect ratio is closest to ``width/height``.

    Ratios are compared on a log scale, so that 2:1 and 1:2 are equally far from 1:1.
    Between two equally close buckets the one with more pixels wins.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    target = math.log(width / height)
    return min(
        SDXL_RESOLUTIONS,
        key=lambda wh: (abs(math.log(wh[0] / wh[1]) - target), -wh[0] * wh[1]),
    )


def round_to_multiple(value: int, multiple: int = 8, minimum: int = 64) -> int:
    """``value`` rounded to the nearest multiple of ``multiple``, at least ``minimum``."""
    return max(minimum, round(value / multiple) * multiple)


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale ``image`` (LANCZOS) to cover ``width`` x ``height`` and crop the centre."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    if image.size == (width, height):
        return image
    return ImageOps.fit(
        image, (width, height), method=PILImage.Resampling.LANCZOS, centering=(0.5, 0.5)
    )


def fit_image_file(
    source: str | Path,
    destination: str | Path,
    width: int,
    height: int,
    text: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Read the image at ``source``, fit it to ``width`` x ``height``, write a PNG.

    The text chunks of the source (InvokeAI's own metadata) are kept, and ``text`` is added.
    Returns the source's size.
    """
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    with PILImage.open(source) as img:
        img.load()
        original_size: tuple[int, int] = img.size
        chunks = {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
        fitted = fit_image(img, width, height)
        info = PngImagePlugin.PngInfo()
        for key, value in {**chunks, **(text or {})}.items():
            info.add_itxt(key, value)
        fitted.save(destination, format="PNG", pnginfo=info)
    return original_size


def as_size(value: Any) -> tuple[int, int] | None:
    """A ``[width, height]`` from JSON as a size, or ``None``."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def fit_target(
    requested: tuple[int, int] | None, result_size: tuple[int, int] | None, keep_native: bool
) -> tuple[str, tuple[int, int] | None]:
    """How to fetch an image: ``("stream", None)`` as it is, ``("fit", size)`` scaled and
    cropped to ``size``, or ``("check", size)`` read whole to learn its size first."""
    if keep_native or requested is None:
        return "stream", None
    if result_size is None:
        return "check", requested
    if result_size == requested:
        return "stream", None
    return "fit", requested


def fit_png(data: bytes, width: int, height: int) -> bytes:
    """``data`` (an image) fitted to ``width`` x ``height`` as a PNG; ``data`` itself when it
    has that size already.

    The source's text chunks (InvokeAI's own metadata) are kept, and
    ``imagegen:resized_from`` says the size it had.
    """
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    with PILImage.open(io.BytesIO(data)) as img:
        img.load()
        if img.size == (width, height):
            return data
        chunks = {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
        chunks["imagegen:resized_from"] = f"{img.size[0]}x{img.size[1]}"
        fitted = fit_image(img, width, height)
        info = PngImagePlugin.PngInfo()
        for key, value in chunks.items():
            info.add_itxt(key, value)
        out = io.BytesIO()
        fitted.save(out, format="PNG", pnginfo=info)
    return out.getvalue()
