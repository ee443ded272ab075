"""SDXL resolution mapping (portrait and landscape) and the fit back to the requested size."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from degrees37_imagegen_invokeai._presets import merge_preset_prompt
from degrees37_imagegen_invokeai._resolution import (
    SDXL_RESOLUTIONS,
    fit_image,
    fit_image_file,
    round_to_multiple,
    sdxl_resolution,
)


def test_buckets_are_about_one_megapixel_in_multiples_of_64_both_ways():
    for width, height in SDXL_RESOLUTIONS:
        assert width % 64 == 0
        assert height % 64 == 0
        assert 0.9e6 < width * height < 1.1e6
        assert (height, width) in SDXL_RESOLUTIONS  # every portrait has its landscape


@pytest.mark.parametrize(
    ("requested", "generated"),
    [
        ((1080, 1920), (768, 1344)),  # 9:16 portrait
        ((1920, 1080), (1344, 768)),  # 16:9 landscape
        ((1024, 1024), (1024, 1024)),
        ((500, 500), (1024, 1024)),
        ((3000, 3000), (1024, 1024)),
        ((832, 1216), (832, 1216)),  # a bucket maps to itself
        ((1216, 832), (1216, 832)),
        ((1200, 900), (1152, 896)),  # 4:3
        ((900, 1200), (896, 1152)),  # 3:4
        ((2100, 900), (1536, 640)),  # 21:9
        ((100, 4000), (512, 2048)),  # beyond the last bucket: the most extreme one
        ((4000, 100), (2048, 512)),
    ],
)
def test_requested_size_maps_to_the_closest_aspect_ratio(requested, generated):
    assert sdxl_resolution(*requested) == generated


def test_mapping_is_the_closest_bucket_on_a_log_scale():
    for width in range(256, 4096, 97):
        for height in (512, 1080, 1920, 3000):
            best = sdxl_resolution(width, height)
            target = math.log(width / height)
            distance = abs(math.log(best[0] / best[1]) - target)
            assert all(
                distance <= abs(math.log(w / h) - target) + 1e-12 for w, h in SDXL_RESOLUTIONS
            )
            # Transposing the request transposes the answer.
            assert sdxl_resolution(height, width) == best[::-1]


def test_round_to_multiple():
    assert round_to_multiple(1080) == 1080
    assert round_to_multiple(1001) == 1000
    assert round_to_multiple(1005) == 1008
    assert round_to_multiple(10) == 64


def test_fit_scales_then_crops_the_centre():
    # Left third red, middle third green, right third blue, 768x1344 -> 1080x1920 keeps the
    # aspect (scale 1.4286 covers 1097x1920), crops 8 px each side.
    img = Image.new("RGB", (768, 1344), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 256, 1344))
    img.paste((0, 0, 255), (512, 0, 768, 1344))
    out = fit_image(img, 1080, 1920)
    assert out.size == (1080, 1920)
    assert out.getpixel((540, 960)) == (0, 255, 0)
    assert out.getpixel((5, 960))[0] > 200  # still red at the left edge
    assert out.getpixel((1074, 960))[2] > 200  # still blue at the right edge
    assert fit_image(img, 768, 1344) is img


def test_fit_file_keeps_the_servers_text_and_adds_ours(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("invokeai_graph", '{"id": "g"}')
    Image.new("RGB", (1344, 768), (9, 9, 9)).save(tmp_path / "in.png", pnginfo=info)
    size = fit_image_file(tmp_path / "in.png", tmp_path / "out.png", 1920, 1080, {"k": "v"})
    assert size == (1344, 768)
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (1920, 1080)
        assert out.text == {"invokeai_graph": '{"id": "g"}', "k": "v"}


@pytest.mark.parametrize(
    ("preset", "prompt", "expected"),
    [
        ("{prompt}, cinematic", "a fox", "a fox, cinematic"),
        ("{prompt}, cinematic", "", "cinematic"),
        ("a {prompt} and another {prompt}", "fox", "a fox and another {prompt}"),  # as the web UI
        ("oil painting", "a fox", "a fox oil painting"),
        ("oil painting", "", "oil painting"),
        ("", "a fox", "a fox"),
        ("{prompt}. photography", "", "photography"),
    ],
)
def test_preset_prompt_merge(preset, prompt, expected):
    assert merge_preset_prompt(preset, prompt) == expected
