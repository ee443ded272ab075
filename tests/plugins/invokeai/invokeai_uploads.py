"""The tests' name for the fake InvokeAI's uploads (:mod:`degrees37_imagegen_invokeai.testing`)."""

from __future__ import annotations

from degrees37_imagegen_invokeai._fake.uploads import answer_upload
from degrees37_imagegen_invokeai.testing import uploads_of

__all__ = ["answer_upload", "uploads_of"]
