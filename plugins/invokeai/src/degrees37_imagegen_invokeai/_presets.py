"""Applying an InvokeAI style preset to a prompt, the way the web UI does.

The web UI (``buildPresetModifiedPrompt``) replaces the first ``{prompt}`` in the preset's
prompt with the user's prompt, or appends the preset after the user's prompt (with a space)
when it has no placeholder, and does the same for the negative prompt. On top of that, the
result is stripped, and when the user's part is empty the separators it leaves at the start
(``", lowres"``) are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["PRESET_PLACEHOLDER", "apply_style_preset", "merge_preset_prompt"]

#: The placeholder InvokeAI's presets use for the user's prompt.
PRESET_PLACEHOLDER = "{prompt}"

_LEADING_SEPARATORS = re.compile(r"^[\s,.;:]+")


def merge_preset_prompt(preset_prompt: str, prompt: str) -> str:
    """``preset_prompt`` with the user's ``prompt`` put in its place."""
    if not preset_prompt:
        return prompt.strip()
    if PRESET_PLACEHOLDER in preset_prompt:
        merged = preset_prompt.replace(PRESET_PLACEHOLDER, prompt, 1)
    else:
        merged = f"{prompt} {preset_prompt}"
    if not prompt.strip():
        merged = _LEADING_SEPARATORS.sub("", merged)
    return merged.strip()


def apply_style_preset(
    preset: Mapping[str, Any], prompt: str, negative_prompt: str
) -> tuple[str, str]:
    """The positive and negative prompts after applying ``preset`` (a preset record)."""
    data = preset.get("preset_data") or {}
    positive = merge_preset_prompt(str(data.get("positive_prompt") or ""), prompt)
    negative = merge_preset_prompt(str(data.get("negative_prompt") or ""), negative_prompt)
    return positive, negative
