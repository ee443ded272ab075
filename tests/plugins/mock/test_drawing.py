"""The mock draws any prompt legibly: what its font lacks is said, not drawn as boxes."""

from __future__ import annotations

import pytest
from PIL import ImageChops

from degrees37_imagegen_mock.drawing import (
    CANNOT_SHOW,
    PlaceholderRequest,
    has_glyph,
    legible,
    render_placeholder,
)


def test_the_font_covers_ascii_but_not_cjk_arabic_or_emoji() -> None:
    assert all(has_glyph(chr(c)) for c in range(0x20, 0x7F))
    for ch in "日本灯عم😀":
        assert not has_glyph(ch)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a lighthouse at dusk", ("a lighthouse at dusk", False)),
        ("café crème — naïve", ("cafe creme - naive", False)),
        ("Straße “Łódź”…", ("Strasse “Lodz”…", False)),  # the font has these quotes
        ("e\u0301te\u0301", ("ete", False)),  # decomposed accents
        ("灯台 at dusk", ("[U+706F U+53F0] at dusk", True)),
        ("منارة", ("[U+0645 U+0646 U+0627 U+0631 U+0629]", True)),
        ("fox 🦊", ("fox [U+1F98A]", True)),
    ],
)
def test_legible(text: str, expected: tuple[str, bool]) -> None:
    assert legible(text) == expected
    drawable, _ = legible(text)
    assert all(has_glyph(ch) for ch in drawable)


def _request(prompt: str, style: str) -> PlaceholderRequest:
    return PlaceholderRequest(prompt, "", 270, 480, 7, style)


@pytest.mark.parametrize("style", ["simple", "detailed", "debug"])
def test_non_latin_prompt_is_drawn_as_code_points_with_a_note(style: str) -> None:
    cjk = render_placeholder(_request("夕暮れの灯台", style))
    assert cjk.size == (270, 480)
    assert render_placeholder(_request("夕暮れの灯台", style)).tobytes() == cjk.tobytes()
    # The same picture as one asked for with the note and code points as its prompt, apart
    # from the colours (which come from the request as given).
    spelled = f"{CANNOT_SHOW}\n[U+5915 U+66AE U+308C U+306E U+706F U+53F0]"
    assert legible("夕暮れの灯台") == (spelled.split("\n")[1], True)
    if style == "debug":  # no colours from the request: the same pixels
        same = render_placeholder(_request(spelled, style))
        assert ImageChops.difference(cjk, same).getbbox() is None


def test_ascii_prompts_are_drawn_as_before() -> None:
    req = _request("a red fox", "simple")
    assert legible(req.prompt) == ("a red fox", False)
    assert render_placeholder(req).tobytes() == render_placeholder(req).tobytes()
