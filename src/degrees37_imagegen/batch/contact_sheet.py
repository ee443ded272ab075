"""A contact sheet: every image of a batch as a labelled thumbnail on one page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..files import atomic_path

__all__ = ["make_contact_sheet"]

_BACKGROUND = (24, 24, 28)
_LABEL = (230, 230, 230)
_MISSING = (60, 40, 40)


def make_contact_sheet(
    items: Sequence[tuple[str, Path]],
    output_path: str | Path,
    *,
    thumb_width: int = 216,
    columns: int | None = None,
) -> Path:
    """Write one PNG showing each ``(label, image path)`` as a thumbnail with its label.

    Thumbnails keep the first readable image's proportions (portrait 1080x1920 gives
    216x384); an image that is missing or unreadable gets a dark tile saying so. ``columns``
    defaults to a near-square grid. The sheet is written atomically.
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    if not items:
        raise ValueError("a contact sheet needs at least one image")
    thumbs: list[Image.Image | None] = []
    ratio: float | None = None
    for _, path in items:
        try:
            with Image.open(path) as img:
                img.draft("RGB", (thumb_width, thumb_width * 4))  # JPEG decodes smaller
                thumb = img.convert("RGB")
                if ratio is None:
                    ratio = thumb.height / thumb.width
                thumb.thumbnail((thumb_width, int(thumb_width * 4)))
                thumbs.append(thumb)
        except (OSError, ValueError):
            thumbs.append(None)
    ratio = ratio or 16 / 9
    thumb_height = max(1, round(thumb_width * ratio))
    font_size = max(10, thumb_width // 16)
    font = ImageFont.load_default(size=font_size)
    label_height = font_size + 8
    gap = max(4, thumb_width // 24)
    cols = columns or max(1, math.ceil(math.sqrt(len(items) * thumb_height / thumb_width)))
    cols = min(cols, len(items))
    rows = math.ceil(len(items) / cols)
    cell_w, cell_h = thumb_width + gap, thumb_height + label_height + gap
    sheet = Image.new("RGB", (cols * cell_w + gap, rows * cell_h + gap), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for n, ((label, _), thumb) in enumerate(zip(items, thumbs)):
        x = gap + (n % cols) * cell_w
        y = gap + (n // cols) * cell_h
        if thumb is None:
            draw.rectangle((x, y, x + thumb_width - 1, y + thumb_height - 1), fill=_MISSING)
            draw.text((x + gap, y + gap), "missing", font=font, fill=_LABEL)
        else:
            fitted = ImageOps.pad(thumb, (thumb_width, thumb_height), color=_BACKGROUND)
            sheet.paste(fitted, (x, y))
        text = label
        if font.getlength(text) > thumb_width:  # the default font is ASCII only: no '…'
            while text and font.getlength(text + "...") > thumb_width:
                text = text[:-1]
            text += "..."
        draw.text((x, y + thumb_height + 3), text, font=font, fill=_LABEL)
    final = Path(output_path)
    with atomic_path(final) as tmp:
        sheet.save(tmp, "PNG", optimize=False)
    return final
