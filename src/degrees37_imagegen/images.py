"""Input images and LoRAs of a request: checked, stored by reference, uploaded once.

A request's options must stay JSON (a job is saved with :meth:`ImageJob.to_dict` and
re-attached elsewhere), so the core turns every input image into a *stored reference*
before the request is made (:func:`prepare_image_options`):

- a path (``str`` or :class:`~pathlib.Path`) stays a path, made absolute;
- ``bytes`` and PIL images are written once to a file named by their content's SHA-256
  (``<sha256>.<ext>``) in :func:`input_cache_dir` (``$IMAGEGEN_CACHE_DIR/inputs``, else
  ``~/.cache/degrees37-imagegen/inputs``), and that path is the reference.

Either way the image is opened and checked first: a missing file, an empty file or one that
is not an image is a one-line :class:`InvalidRequestError` before anything is sent. Plugins
read a reference back with :func:`load_image` and upload it through their server's API at
most once per distinct content with an :class:`UploadCache`.

The options concerned: ``init_image`` (the image img2img starts from), ``strength`` (0 to
1, the share of the image that is regenerated, as A1111's denoising strength), ``images``
(other named images a template uses: ``{name: image}``) and ``loras`` (``[{name, weight}]``
or ``"name:0.8"`` strings, normalised by :func:`parse_loras`).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_STRENGTH",
    "IMAGE_OPTIONS",
    "InputImage",
    "UploadCache",
    "check_strength",
    "image_inputs",
    "input_cache_dir",
    "load_image",
    "parse_loras",
    "prepare_image_options",
    "resolve_image_paths",
    "store_image",
]

#: The strength used when ``init_image`` is given without one (A1111's default).
DEFAULT_STRENGTH = 0.75
#: The options this module checks and normalises.
IMAGE_OPTIONS = frozenset({"init_image", "strength", "images", "loras"})

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


@dataclass(frozen=True)
class InputImage:
    """One input image read and checked: its bytes, content hash, format and size."""

    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    source: str

    @property
    def filename(self) -> str:
        """A file name made from the content hash: the same image always has the same name."""
        return f"{self.sha256[:32]}.{_EXTENSIONS.get(self.format, 'png')}"

    @property
    def mime(self) -> str:
        """The image's media type (``image/png``...)."""
        return _MIME.get(self.format, "application/octet-stream")


def input_cache_dir() -> Path:
    """Where images given as bytes or PIL images are stored by content hash."""
    root = os.environ.get("IMAGEGEN_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "degrees37-imagegen"
    return base / "inputs"


def _check_bytes(data: bytes, source: str, label: str) -> InputImage:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidRequestError(f"{label}: {source} is empty (0 bytes), not an image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, size = str(image.format or "PNG"), image.size
            image.verify()  # reads the whole file: a truncated image fails here
    except UnidentifiedImageError:
        raise InvalidRequestError(f"{label}: {source} is not an image") from None
    except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises on a broken image
        raise InvalidRequestError(f"{label}: {source} is not a readable image ({exc})") from None
    return InputImage(data, hashlib.sha256(data).hexdigest(), fmt, size[0], size[1], source)


def load_image(value: Any, *, label: str = "init_image") -> InputImage:
    """Read and check an image given as a path, ``bytes`` or a PIL image.

    Raises :class:`InvalidRequestError` in one line naming ``label`` for a missing or empty
    file, or one that is not an image.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _check_bytes(bytes(value), f"{len(value)} bytes", label)
    if isinstance(value, (str, Path)):
        if isinstance(value, str) and not value.strip():
            raise InvalidRequestError(f"{label}: an empty path is not an image")
        path = Path(value).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidRequestError(f"{label}: no such file: {path}") from None
        except IsADirectoryError:
            raise InvalidRequestError(f"{label}: {path} is a folder, not an image") from None
        except OSError as exc:
            raise InvalidRequestError(
                f"{label}: cannot read {path}: {exc.strerror or exc}"
            ) from None
        return _check_bytes(data, str(path), label)
    if hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode"):
        buffer = io.BytesIO()
        try:
            value.save(buffer, format="PNG")
        except (OSError, ValueError) as exc:
            raise InvalidRequestError(f"{label}: cannot encode the PIL image ({exc})") from None
        return _check_bytes(buffer.getvalue(), "a PIL image", label)
    raise InvalidRequestError(
        f"{label} must be a path, bytes or a PIL image, got {type(value).__name__}"
    )


def store_image(value: Any, *, label: str = "init_image", cache_dir: Path | None = None) -> str:
    """Check an image and return its stored reference (a path; see the module docstring)."""
    image = load_image(value, label=label)
    if isinstance(value, (str, Path)):
        return str(Path(value).expanduser().resolve())
    folder = cache_dir or input_cache_dir()
    target = folder / f"{image.sha256}.{_EXTENSIONS.get(image.format, 'png')}"
    if not target.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(image.data)
            os.replace(partial, target)
        except OSError as exc:
            raise InvalidRequestError(
                f"{label}: cannot store the image in {folder}: {exc.strerror or exc} "
                "(set IMAGEGEN_CACHE_DIR)"
            ) from None
    return str(target)


def parse_loras(value: Any) -> list[dict[str, Any]]:
    """``[{"name": ..., "weight": ...}]`` from a list of mappings or ``"name:0.8"`` strings
    (a bare ``"name"`` has weight 1.0). Raises :class:`InvalidRequestError` naming the item."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidRequestError(
            f"loras must be a list of {{name, weight}} or 'name:weight' items, got {value!r}"
        )
    out: list[dict[str, Any]] = []
    for item in value:
        name: Any
        if isinstance(item, str):
            name, sep, text = item.rpartition(":")
            if not sep:
                name, text = item, "1"
            try:
                weight: Any = float(text)
            except ValueError:
                name, weight = item, 1.0  # a colon inside the name, no weight
        elif isinstance(item, Mapping):
            name, weight = item.get("name"), item.get("weight", 1.0)
        else:
            raise InvalidRequestError(f"loras: {item!r} is not a name:weight or {{name, weight}}")
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequestError(f"loras: {item!r} has no LoRA name")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise InvalidRequestError(f"loras: the weight of {name!r} must be a number")
        if not math.isfinite(weight):
            raise InvalidRequestError(f"loras: the weight of {name!r} must be finite")
        out.append({"name": name.strip(), "weight": float(weight)})
    return out


def check_strength(value: Any) -> float:
    """``strength`` as a float in 0..1, or :class:`InvalidRequestError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidRequestError(
            f"strength must be a number from 0 to 1 (the share regenerated), got {value!r}"
        )
    return float(value)


def prepare_image_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with input images replaced by stored references, ``strength`` checked and
    ``loras`` normalised: JSON-safe, and every image checked before anything is sent."""
    out = dict(options)
    if out.get("init_image") is not None:
        out["init_image"] = store_image(out["init_image"], label="init_image")
    images = out.get("images")
    if images is not None:
        if not isinstance(images, Mapping):
            raise InvalidRequestError("images must map names to images ({name: path})")
        stored: dict[str, str] = {}
        for name, image in images.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise InvalidRequestError(f"images: {name!r} is not a name")
            stored[name] = store_image(image, label=f"images.{name}")
        out["images"] = stored
    if out.get("strength") is not None:
        out["strength"] = check_strength(out["strength"])
    if "loras" in out:
        out["loras"] = parse_loras(out["loras"])
    return out


def resolve_image_paths(options: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """``options`` with relative ``init_image`` and ``images`` paths made relative to
    ``base`` (a jobs file's folder), each checked to be an image (:func:`load_image`)."""
    out = dict(options)

    def resolve(value: Any, label: str) -> Any:
        if isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            value = str(path if path.is_absolute() else base / path)
            load_image(value, label=label)
        return value

    if out.get("init_image") is not None:
        out["init_image"] = resolve(out["init_image"], "init_image")
    if isinstance(out.get("images"), Mapping):
        out["images"] = {k: resolve(v, f"images.{k}") for k, v in out["images"].items()}
    if out.get("strength") is not None:
        check_strength(out["strength"])
    if "loras" in out:
        out["loras"] = parse_loras(out["loras"])
    return out


def image_inputs(options: Mapping[str, Any]) -> dict[str, str]:
    """The named input images of a request's options: ``init_image`` and ``images``."""
    named: dict[str, str] = {}
    if options.get("init_image") is not None:
        named["init_image"] = str(options["init_image"])
    for name, ref in dict(options.get("images") or {}).items():
        named[str(name)] = str(ref)
    return named


class UploadCache:
    """What one server calls each image it was sent: content hash -> the server's name.

    :meth:`name` uploads an image only the first time its content is seen (one upload at a
    time per content, however many threads ask).
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def name(self, image: InputImage, upload: Callable[[InputImage], str]) -> str:
        """The server's name of ``image``, uploading it with ``upload`` if needed."""
        with self._lock:
            lock = self._locks.setdefault(image.sha256, threading.Lock())
        with lock:
            found = self._names.get(image.sha256)
            if found is None:
                found = self._names[image.sha256] = upload(image)
            return found

    def forget(self, image: InputImage) -> None:
        """Drop ``image``'s name (the server lost the file): the next use uploads it again."""
        with self._lock:
            self._names.pop(image.sha256, None)

    def __len__(self) -> int:
        return len(self._names)
