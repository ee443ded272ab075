"""The tests' fake InvokeAI: :mod:`degrees37_imagegen_invokeai.testing`, with
:class:`Captures` reading ``captures/`` beside this file (every recording, not only the ones
the plugin ships), so ``reject_next_enqueue`` can name any of them."""

from __future__ import annotations

from pathlib import Path

from degrees37_imagegen_invokeai import testing as _testing
from degrees37_imagegen_invokeai.testing import (
    BASE_URL,
    QUEUE,
    CaptureFolder,
    FakeInvokeAI,
    FakeItem,
    model_record,
)

__all__ = ["BASE_URL", "CAPTURES", "QUEUE", "Captures", "FakeInvokeAI", "FakeItem", "model_record"]

CAPTURES = Path(__file__).parent / "captures"


class Captures(_testing.Captures):
    """The capture files in ``captures/``, read once."""

    def __init__(self, folder: CaptureFolder = CAPTURES) -> None:
        super().__init__(folder)
