"""Sending input images to InvokeAI: ``POST /api/v1/images/upload``, once per content.

Images go up as InvokeAI's web UI sends a canvas layer: ``image_category=general`` and
``is_intermediate=true`` (they stay out of the gallery). An upload makes a new image on
every call, so it is repeated only when it cannot have reached the server; the
:class:`~degrees37_imagegen.images.UploadCache` of each generator makes sure that one
content goes up once per process.

Across processes (a rerun, another machine) and after an upload whose answer was lost,
the server itself is asked: each upload carries its content's SHA-256 in its metadata
(``{"degrees37_imagegen_input": sha256}``), and ``GET /api/v1/images/?search_term=``
(which InvokeAI matches against the metadata) finds it. A found image is used only when
its own metadata holds that hash, so a server that ignores the search cannot hand back
another image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

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

__all__ = ["METADATA_KEY", "UPLOAD_PATH", "find_upload", "upload_image"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The upload route.
UPLOAD_PATH = "/api/v1/images/upload"
_PARAMS = {"image_category": "general", "is_intermediate": "true"}
#: The key of an upload's metadata that holds its content's SHA-256.
METADATA_KEY = "degrees37_imagegen_input"
#: The image list, searched by metadata.
SEARCH_PATH = "/api/v1/images/"


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
    """The ``image_name`` of ``image`` on the server: an earlier upload of the same content
    (:func:`find_upload`), or a new one."""
    found = find_upload(api, image)
    if found is not None:
        log.info("%s is on InvokeAI already as %s", image.source, found)
        return found
    metadata = json.dumps({METADATA_KEY: image.sha256})

    def attempt() -> Any:
        try:
            response = api.client().post(
                UPLOAD_PATH,
                params=_PARAMS,
                files={"file": (image.filename, image.data, image.mime)},
                data={"metadata": metadata},
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
        if sent.error.work != "not_sent":  # it may be there: if so, it is the one to use
            found = find_upload(api, image)
            if found is not None:
                return found
        raise sent.error from sent.error.__cause__
    name = answer.get("image_name") if isinstance(answer, dict) else None
    if not isinstance(name, str) or not name:
        raise GeneratorError(
            f"POST {UPLOAD_PATH} answered no image_name", generator=generator, work="unknown"
        )
    log.info("uploaded %s to InvokeAI as %s", image.source, name)
    return name


def find_upload(api: InvokeAIAPI, image: InputImage) -> str | None:
    """The ``image_name`` of an upload of ``image``'s content on this server, or ``None``
    (none found, or the server could not tell: uploading it is then the way)."""
    params = {
        "search_term": image.sha256,
        "is_intermediate": "true",
        "categories": _PARAMS["image_category"],
        "limit": "1",
    }
    try:
        found = api.call("GET", SEARCH_PATH, params=params)
        items = found.get("items") if isinstance(found, dict) else None
        first = items[0] if isinstance(items, list) and items else None
        name = first.get("image_name") if isinstance(first, dict) else None
        if not isinstance(name, str) or not name:
            return None
        metadata = api.call("GET", f"/api/v1/images/i/{quote(name, safe='')}/metadata")
    except GeneratorError as exc:  # not found, not answered, or not JSON
        log.debug("could not look %s up on InvokeAI: %s", image.source, exc)
        return None
    if isinstance(metadata, dict) and metadata.get(METADATA_KEY) == image.sha256:
        return name
    return None
