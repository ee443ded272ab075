"""Drawing the placeholder images: ``simple``, ``detailed`` and ``debug``.

Everything is derived from the request (prompt, size, seed, style), so the same request
always gives the same pixels. The font is the one Pillow ships (``ImageFont.load_default``),
so no system font is needed, and the images are the same on every machine. That font has
little beyond ASCII, so :func:`legible` writes other text as well as it can: accented letters
without their accents (``café`` as ``cafe``), typographic marks as ASCII, and anything else
(CJK, Arabic, emoji...) as its code points in brackets, under a line that says the text
cannot be shown in this font. A large font covering every script is deliberately not
shipped in the wheel.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "CANNOT_SHOW",
    "STYLES",
    "PlaceholderRequest",
    "has_glyph",
    "legible",
    "render_placeholder",
    "wrap_text",
]

#: The placeholder styles the mock generator draws.
STYLES = ("simple", "detailed", "debug")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class PlaceholderRequest:
    """Everything a placeholder shows."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    style: str = "simple"
    generator: str = "mock"
    image_id: str = ""
    label: str = "MOCK"


@lru_cache(maxsize=64)
def _font(size: int) -> Font:
    return ImageFont.load_default(size=max(8, size))


#: The note drawn above text that has characters the font cannot draw.
CANNOT_SHOW = "(text cannot be shown in this font; code points in brackets)"

#: ASCII for letters and marks that have no decomposition into ASCII (ß, æ, ł, dashes,
#: quotes...), written as escapes so that they cannot be mistaken for their ASCII look-alikes.
_ASCII = {
    "\u00df": "ss",
    "\u00e6": "ae",
    "\u00c6": "AE",
    "\u0153": "oe",
    "\u0152": "OE",
    "\u00f8": "o",
    "\u00d8": "O",
    "\u0142": "l",
    "\u0141": "L",
    "\u0111": "d",
    "\u0110": "D",
    "\u00fe": "th",
    "\u00de": "Th",
    "\u0131": "i",
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": ",",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u2022": "*",
    "\u00d7": "x",
}

#: A code point no font has a glyph for: what a missing glyph looks like in the font.
_NO_GLYPH = "\U0010fffd"


@lru_cache(maxsize=1)
def _probe_font() -> Font:
    return _font(24)


@lru_cache(maxsize=1)
def _missing_glyph() -> bytes:
    return _glyph(_NO_GLYPH)


def _glyph(ch: str) -> bytes:
    mask = _probe_font().getmask(ch)
    return repr(mask.size).encode() + bytes(mask)


@lru_cache(maxsize=4096)
def has_glyph(ch: str) -> bool:
    """Whether the placeholder font draws ``ch`` (not its missing-glyph box)."""
    if ch.isspace():
        return True
    return _glyph(ch) != _missing_glyph()


def _ascii_for(ch: str) -> str | None:
    if ch in _ASCII:
        return _ASCII[ch]
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and base != ch and all(has_glyph(c) for c in base):
        return base
    return None


def legible(text: str) -> tuple[str, bool]:
    """``text`` as the placeholder font can draw it, and whether some of it could not be.

    Letters with accents lose them, typographic marks become ASCII, and any other run of
    characters the font lacks becomes its code points in brackets:
    ``"灯台 at dusk"`` is ``("[U+706F U+53F0] at dusk", True)``.
    """
    out: list[str] = []
    missing: list[str] = []
    lost = False

    def flush() -> None:
        if missing:
            out.append("[" + " ".join(f"U+{ord(c):04X}" for c in missing) + "]")
            missing.clear()

    for ch in text:
        if unicodedata.combining(ch) and not has_glyph(ch):
            continue  # an accent on the letter before: the letter alone is shown
        if has_glyph(ch):
            flush()
            out.append(ch)
            continue
        ascii_text = _ascii_for(ch)
        if ascii_text is not None:
            flush()
            out.append(ascii_text)
            continue
        missing.append(ch)
        lost = True
    flush()
    return "".join(out), lost


def _shown(text: str) -> str:
    """``text`` ready to draw: legible, with the note above it when some could not be."""
    drawable, lost = legible(text)
    return f"{CANNOT_SHOW}\n{drawable}" if lost else drawable


def _rng(req: PlaceholderRequest) -> random.Random:
    key = f"{req.prompt}\0{req.width}\0{req.height}\0{req.seed}\0{req.style}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def _palette(rng: random.Random) -> tuple[RGB, RGB]:
    hue = rng.random()
    import colorsys

    top = colorsys.hsv_to_rgb(hue, 0.45, 0.55)
    bottom = colorsys.hsv_to_rgb((hue + 0.12) % 1.0, 0.55, 0.25)
    return (
        (int(top[0] * 255), int(top[1] * 255), int(top[2] * 255)),
        (int(bottom[0] * 255), int(bottom[1] * 255), int(bottom[2] * 255)),
    )


def _gradient(width: int, height: int, top: RGB, bottom: RGB) -> Image.Image:
    # A 1-pixel-wide column resized up is far faster than drawing every row.
    column = Image.new("RGB", (1, 256))
    for y in range(256):
        t = y / 255
        column.putpixel((0, y), tuple(int(top[i] + (bottom[i] - top[i]) * t) for i in range(3)))
    return column.resize((width, height), Image.Resampling.BILINEAR)


def wrap_text(text: str, font: Font, max_width: float) -> list[str]:
    """Break ``text`` into lines no wider than ``max_width`` pixels (long words are split)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while font.getlength(word) > max_width and len(word) > 1:
                cut = len(word)
                while cut > 1 and font.getlength(word[:cut]) > max_width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _line_height(font: Font) -> int:
    bbox = font.getbbox("Ag")
    return int((bbox[3] - bbox[1]) * 1.35) + 1


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: Sequence[str],
    font: Font,
    x: int,
    y: int,
    fill: RGB | tuple[int, int, int, int],
    *,
    max_y: int,
    center_width: int | None = None,
) -> int:
    step = _line_height(font)
    for i, line in enumerate(lines):
        if y + step > max_y:
            if i < len(lines):
                draw.text((x, y - step), "...", font=font, fill=fill)
            break
        lx = x
        if center_width is not None:
            lx = x + int((center_width - font.getlength(line)) / 2)
        draw.text((lx, y), line, font=font, fill=fill)
        y += step
    return y


def _sizes(req: PlaceholderRequest) -> tuple[int, int, int]:
    short = min(req.width, req.height)
    return max(14, short // 9), max(10, short // 26), max(10, short // 32)


def _simple(req: PlaceholderRequest, rng: random.Random) -> Image.Image:
    top, bottom = _palette(rng)
    img = _gradient(req.width, req.height, top, bottom)
    draw = ImageDraw.Draw(img)
    title, body, _ = _sizes(req)
    margin = max(8, req.width // 16)
    inner = req.width - 2 * margin
    y = req.height // 3
    y = _draw_lines(
        draw,
        [req.label],
        _font(title),
        margin,
        y,
        (255, 255, 255),
        max_y=req.height,
        center_width=inner,
    )
    size_font = _font(body)
    y = _draw_lines(
        draw,
        [f"{req.width} x {req.height}"],
        size_font,
        margin,
        y + body // 2,
        (230, 230, 230),
        max_y=req.height,
        center_width=inner,
    )
    lines = wrap_text(req.prompt, size_font, inner)
    _draw_lines(
        draw,
        lines,
        size_font,
        margin,
        y + body,
        (255, 255, 255),
        max_y=req.height - margin,
        center_width=inner,
    )
    return img


def _detailed(req: PlaceholderRequest, rng: random.Random) -> Image.Image:
    w, h = req.width, req.height
    top, bottom = _palette(rng)
    img = _gradient(w, h, top, bottom)
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.45, 0.6))
    # sun or moon
    r = int(min(w, h) * rng.uniform(0.06, 0.11))
    cx, cy = int(w * rng.uniform(0.2, 0.8)), int(horizon * rng.uniform(0.25, 0.6))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 230, 170))
    # three mountain ranges, darker towards the viewer
    for layer in range(3):
        shade = 150 - layer * 45
        base = horizon + layer * h // 30
        points = [(0, h)]
        x = 0
        while x < w:
            points.append((x, base - int(rng.uniform(0.05, 0.22) * h / (layer + 1))))
            x += max(8, int(w * rng.uniform(0.08, 0.2)))
        points += [(w, base - int(0.1 * h / (layer + 1))), (w, h)]
        draw.polygon(points, fill=(shade // 2, shade, shade // 2 + 20))
    # ground and a few trees
    draw.rectangle((0, horizon + h // 10, w, h), fill=(40, 70, 45))
    for _ in range(rng.randint(3, 7)):
        tx = int(w * rng.random())
        ty = horizon + h // 10 + int(h * 0.05 * rng.random())
        th = int(h * rng.uniform(0.05, 0.1))
        draw.polygon([(tx, ty - th), (tx - th // 3, ty), (tx + th // 3, ty)], fill=(20, 50, 30))
    # translucent overlay with the prompt
    _, body, small = _sizes(req)
    margin = max(8, w // 18)
    font = _font(body)
    lines = wrap_text(req.prompt, font, w - 4 * margin)
    panel_h = min(
        int(h * 0.42),
        len(lines) * _line_height(font) + _line_height(_font(small)) + margin + margin // 2,
    )
    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    odraw = ImageDraw.Draw(overlay)
    py = h - panel_h - margin
    odraw.rounded_rectangle(
        (margin, py, w - margin, h - margin), radius=margin // 2, fill=(0, 0, 0, 150)
    )
    img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(img)
    y = _draw_lines(
        draw,
        [f"{req.label} - {w} x {h} - seed {req.seed}"],
        _font(small),
        2 * margin,
        py + margin // 2,
        (210, 210, 210),
        max_y=h - margin,
    )
    _draw_lines(
        draw,
        lines,
        font,
        2 * margin,
        y + small // 2,
        (255, 255, 255),
        max_y=h - margin - margin // 2,
    )
    return img


def _debug(req: PlaceholderRequest, rng: random.Random) -> Image.Image:
    w, h = req.width, req.height
    img = Image.new("RGB", (w, h), (24, 26, 30))
    draw = ImageDraw.Draw(img)
    grid = max(16, min(w, h) // 12)
    for x in range(0, w, grid):
        draw.line((x, 0, x, h), fill=(38, 41, 47))
    for y in range(0, h, grid):
        draw.line((0, y, w, y), fill=(38, 41, 47))
    draw.rectangle((0, 0, w - 1, h - 1), outline=(255, 90, 90), width=max(2, w // 200))
    _, body, small = _sizes(req)
    font, sfont = _font(body), _font(small)
    margin = max(8, w // 20)
    inner = w - 2 * margin
    rows = [
        ("generator", req.generator),
        ("image id", req.image_id or "-"),
        ("size", f"{w} x {h}"),
        ("seed", str(req.seed)),
        ("style", req.style),
    ]
    y = margin
    for key, value in rows:
        y = _draw_lines(
            draw,
            wrap_text(f"{key}: {value}", font, inner),
            font,
            margin,
            y,
            (140, 220, 140),
            max_y=h,
        )
    sections: Iterable[tuple[str, str]] = (
        ("prompt", req.prompt),
        ("negative prompt", req.negative_prompt or "(none)"),
    )
    for key, value in sections:
        y += small
        y = _draw_lines(draw, [f"{key}:"], font, margin, y, (240, 200, 120), max_y=h)
        y = _draw_lines(
            draw,
            wrap_text(value, sfont, inner),
            sfont,
            margin,
            y,
            (230, 230, 230),
            max_y=h - margin,
        )
    return img


def render_placeholder(req: PlaceholderRequest) -> Image.Image:
    """Draw the placeholder for ``req``; the same request always gives the same pixels."""
    if req.style not in STYLES:
        raise ValueError(f"unknown placeholder style {req.style!r}; use one of {STYLES}")
    rng = _rng(req)  # from the request as given, so the colours do not depend on the font
    req = replace(
        req,
        prompt=_shown(req.prompt),
        negative_prompt=_shown(req.negative_prompt),
        label=legible(req.label)[0],
        generator=legible(req.generator)[0],
    )
    if req.style == "detailed":
        return _detailed(req, rng)
    if req.style == "debug":
        return _debug(req, rng)
    return _simple(req, rng)
