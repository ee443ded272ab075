"""The nodes the fake ComfyUI can run: images from EmptyImage, fake latents for KSampler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

from .common import NodeError, load_capture

if TYPE_CHECKING:
    from .server import FakeComfyUI

__all__ = ["run"]


def run(
    fake: FakeComfyUI,
    class_type: str,
    inputs: dict[str, Any],
    node_id: str,
    pid: str,
    sid: str | None,
) -> tuple[list[Any], dict[str, Any] | None]:
    """Run one node of the few kinds the fake knows: ``(its outputs, its UI output)``."""
    fake._wait_gate(class_type)
    if class_type == "EmptyImage":
        color = int(inputs["color"])
        rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
        size = (int(inputs["width"]), int(inputs["height"]))
        return [[Image.new("RGB", size, rgb) for _ in range(int(inputs["batch_size"]))]], None
    if class_type == "SaveImage":
        return [], fake._save(inputs["images"], inputs["filename_prefix"], "output")
    if class_type == "PreviewImage":
        return [], fake._save(inputs["images"], "ComfyUI_temp_fake", "temp")
    if class_type == "ImageBlur":
        return [inputs["image"]], None
    if class_type == "ImageScaleBy":
        images = inputs["image"]
        w, h = images[0].size
        nw, nh = round(w * inputs["scale_by"]), round(h * inputs["scale_by"])
        if nw <= 0 or nh <= 0:
            captured = load_capture("exec_error_imagescaleby_history.json", fake.captures)
            entry = next(iter(captured["response"]["body"]["json"].values()))
            error = dict(entry["status"]["messages"])["execution_error"]
            raise NodeError(
                "RuntimeError",
                "Input and output sizes should be greater than 0, but got input "
                f"(H: {h}, W: {w}) output (H: {nh}, W: {nw})\n",
                error["traceback"],
            )
        return [[i.resize((nw, nh)) for i in images]], None
    if class_type == "CheckpointLoaderSimple":
        return ["MODEL", "CLIP", "VAE"], None
    if class_type == "CLIPTextEncode":
        return [("CONDITIONING", inputs["text"])], None
    if class_type == "EmptyLatentImage":
        return [
            {
                "w": int(inputs["width"]) // 8,
                "h": int(inputs["height"]) // 8,
                "batch": int(inputs["batch_size"]),
            }
        ], None
    if class_type == "KSampler":
        steps = int(inputs["steps"])
        preview = (fake.captures / "binary_legacy_01.bin").read_bytes()
        for step in range(1, steps + 1):
            fake.send(
                "progress",
                {"value": step, "max": steps, "prompt_id": pid, "node": node_id},
                sid,
            )
            if fake.preview_frames:
                fake.send_binary(preview, sid)
        return [{**inputs["latent_image"], "seed": inputs["seed"]}], None
    if class_type == "VAEDecode":
        latent = inputs["samples"]
        shade = int(latent.get("seed", 0)) % 256
        size = (latent["w"] * 8, latent["h"] * 8)
        return [
            [Image.new("RGB", size, (shade, shade, shade)) for _ in range(latent["batch"])]
        ], None
    raise NodeError("NotImplementedError", f"the fake cannot run {class_type}", [])
