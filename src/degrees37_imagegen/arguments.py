"""What a caller passes to ``submit``/``generate_image``, checked by the core before any
plugin code runs: the types of the request, and the options the generator does not know.

A wrong type is an :class:`~degrees37_imagegen.InvalidRequestError` naming the argument
(``on_progress`` that cannot be called: :class:`TypeError`), never an ``AttributeError``
from inside a plugin. An option the generator does not declare in
:attr:`~degrees37_imagegen.BaseImageGenerator.known_options` (``stpes=30``) is ignored with
an :class:`UnknownOptionWarning` naming it, the same way for every plugin.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError
from .images import IMAGE_OPTIONS

if TYPE_CHECKING:
    from .base import BaseImageGenerator

__all__ = [
    "CORE_OPTIONS",
    "UnknownOptionWarning",
    "check_arguments",
    "check_request_types",
    "unknown_options",
]

#: Options the core itself takes for every generator: ``timeout`` (of ``generate_image``)
#: and the input images and LoRAs (checked by ``images.prepare_image_options``).
CORE_OPTIONS = frozenset({"timeout"}) | IMAGE_OPTIONS


class UnknownOptionWarning(UserWarning):
    """A per-call option the generator does not know (likely a typo); it is ignored."""


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})" if len(repr(value)) <= 40 else type(value).__name__


def check_request_types(
    prompt: Any, negative_prompt: Any, width: Any, height: Any, seed: Any
) -> None:
    """Raise :class:`InvalidRequestError` naming the first argument of the wrong type:
    ``prompt`` and ``negative_prompt`` are text, ``width``, ``height`` and ``seed`` whole
    numbers (``True`` is not one)."""
    for label, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(text, str):
            raise InvalidRequestError(f"{label} must be text, got {_kind(text)}")
    for label, number in (("width", width), ("height", height), ("seed", seed)):
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidRequestError(f"{label} must be a whole number, got {_kind(number)}")


def unknown_options(gen: BaseImageGenerator, options: Collection[str]) -> list[str]:
    """The names in ``options`` that neither ``gen`` (its :attr:`known_options`) nor the core
    (:data:`CORE_OPTIONS`) knows, sorted; none when ``gen`` declares nothing."""
    known = gen.known_options
    if known is None:
        return []
    return sorted(set(options) - set(known) - CORE_OPTIONS)


def check_arguments(
    gen: BaseImageGenerator,
    prompt: Any,
    negative_prompt: Any,
    width: Any,
    height: Any,
    seed: Any,
    on_progress: Any,
    options: Mapping[str, Any],
) -> None:
    """Check a call of ``gen.submit`` before anything of the plugin runs.

    Raises :class:`InvalidRequestError` for an argument of the wrong type (see
    :func:`check_request_types`) and :class:`TypeError` when ``on_progress`` is neither
    ``None`` nor callable; warns (:class:`UnknownOptionWarning`) naming each option ``gen``
    does not know, which is then ignored.
    """
    try:
        check_request_types(prompt, negative_prompt, width, height, seed)
    except InvalidRequestError as exc:
        exc.generator = gen.name
        raise
    if on_progress is not None and not callable(on_progress):
        raise TypeError(f"on_progress must be a callable or None, got {_kind(on_progress)}")
    unknown = unknown_options(gen, options)
    if unknown:
        warnings.warn(
            f"generator {gen.name!r}: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} ignored (it knows: "
            f"{', '.join(sorted(set(gen.known_options or ()) | CORE_OPTIONS))})",
            UnknownOptionWarning,
            stacklevel=2,
        )
