"""The fake InvokeAI behind :mod:`degrees37_imagegen_invokeai.testing` (private parts)."""
