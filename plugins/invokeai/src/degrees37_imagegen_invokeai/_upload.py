"""Sending input images to InvokeAI: ``POST /api/v1/images/upload``, once per content.

Images go up as InvokeAI's web UI sends a canvas layer: ``image_category=general`` and
``is_intermediate=true`` (they stay out of the gallery). An upload makes a new image on
every call, so it is repeated only when it cannot have reached the server; the
:class:`~degrees37_imagegen.images.UploadCache` of each generator makes sure that one
content goes up once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from degrees37_imagegen._lazy import lazy_module
from degrees37_imagegen.errors import GeneratorError, GeneratorLimitError, InvalidRequestError
from degrees37_imagegen.images import InputImage

from ._api import InvokeAIAPI
from ._http import check_response, is_not_sent_error, json_body, transport_error
from .errors import InvokeAIHTTPError

if TYPE_CHECKING:
    import httpx
else:  # imported when a request is made (see degrees37_imagegen._lazy)
    httpx = lazy_module("httpx")

__all__ = ["UPLOAD_PATH", "upload_image"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The upload route.
UPLOAD_PATH = "/api/v1/images/upload"
_PARAMS = {"image_category": "general", "is_intermediate": "true"}


class _Sent(Exception):
    """The upload reached the server (or may have): ``retrying`` must not repeat it."""

    def __init__(self, error: GeneratorError) -> None:
        super().__init__(str(error))
        self.error = error


def upload_image(
    api: InvokeAIAPI,
    image: InputImage,
    retrying: Callable[..., Any],
    generator: str | None = None,
) -> str:
    """Upload ``image``; return the ``image_name`` InvokeAI gave it."""

    def attempt() -> Any:
        try:
            response = api.client().post(
                UPLOAD_PATH,
                params=_PARAMS,
                files={"file": (image.filename, image.data, image.mime)},
            )
        except httpx.HTTPError as exc:
            error = transport_error(exc, "POST", api.base_url + UPLOAD_PATH, generator)
            if is_not_sent_error(exc):
                raise error from exc  # never reached the server: safe to send again
            raise _Sent(error) from exc
        try:
            check_response(response, generator)
            return json_body(response, generator)
        except InvokeAIHTTPError as exc:
            if exc.status_code == 415:  # "Not an image" / "Failed to read image"
                raise _Sent(
                    InvalidRequestError(
                        f"InvokeAI refused the input image {image.source}: {exc.detail}",
                        generator=generator,
                        work="not_sent",
                    )
                ) from exc
            raise _Sent(exc) from exc
        except GeneratorLimitError:
            raise  # busy: it did not act; waiting and sending again is what it asked for
        except GeneratorError as exc:
            raise _Sent(exc) from exc

    try:
        answer = retrying(attempt)
    except _Sent as sent:
        raise sent.error from sent.error.__cause__
    name = answer.get("image_name") if isinstance(answer, dict) else None
    if not isinstance(name, str) or not name:
        raise GeneratorError(
            f"POST {UPLOAD_PATH} answered no image_name", generator=generator, work="unknown"
        )
    log.info("uploaded %s to InvokeAI as %s", image.source, name)
    return name
