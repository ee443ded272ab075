"""The fake ComfyUI behind :mod:`degrees37_imagegen_comfyui.testing` (private parts)."""
