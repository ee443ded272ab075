"""The tests' name for the shared WebSocket framing: :mod:`degrees37_imagegen.testing._wsfake`."""

from degrees37_imagegen.testing._wsfake import ServerSocket

__all__ = ["ServerSocket"]
