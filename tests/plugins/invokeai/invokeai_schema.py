"""The tests' name for the schema validator of :mod:`degrees37_imagegen_invokeai.testing`."""

from __future__ import annotations

from degrees37_imagegen_invokeai.testing import OpenAPISchema

__all__ = ["OpenAPISchema"]
