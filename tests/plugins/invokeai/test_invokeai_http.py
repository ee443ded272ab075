"""InvokeAI's error answers and transport failures become short, typed, data-carrying errors."""

from __future__ import annotations

import glob
from pathlib import Path

import httpx
import pytest
from invokeai_fake import CAPTURES

from degrees37_imagegen import (
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    InvalidRequestError,
)
from degrees37_imagegen.errors import AuthenticationError, ServerError
from degrees37_imagegen_invokeai._http import (
    check_response,
    json_body,
    summarize_validation_errors,
    transport_error,
    was_not_sent,
)
from degrees37_imagegen_invokeai.errors import (
    InvokeAIAuthenticationError,
    InvokeAIRequestError,
    InvokeAIServerError,
)

REFUSED = sorted(
    Path(p).name
    for p in glob.glob(str(CAPTURES / "*.json"))
    if Path(p).name.startswith(("enqueue_", "malformed_"))
)


def answer(captures, name):
    record = captures.record(name)
    req = record["request"]
    request = httpx.Request(req["method"], f"http://h{req['path']}")
    return httpx.Response(
        record["status"],
        json=record["body"],
        headers={"content-type": record["headers"]["content-type"]},
        request=request,
    )


@pytest.mark.parametrize("name", REFUSED)
def test_every_captured_422_gives_one_short_line(captures, name):
    response = answer(captures, name)
    if response.status_code != 422:
        return
    with pytest.raises(InvokeAIRequestError) as caught:
        check_response(response, "invokeai")
    error = caught.value
    text = str(error)
    assert text.startswith("InvokeAI rejected POST /api/v1/queue/default/enqueue_batch (422): ")
    assert len(text) < 400, text
    assert "\n" not in text
    assert error.detail == captures.body(name)["detail"]
    assert error.generator == "invokeai"


def test_unknown_node_type_summary_drops_the_list_of_every_type(captures):
    detail = captures.body("malformed_unknown_node_type.json")["detail"]
    assert len(str(detail)) > 12000
    assert summarize_validation_errors(detail) == (
        "batch.graph.nodes.a: Input tag 'no_such_node' found using 'type' does not match any "
        "of the expected tags"
    )


def test_summary_names_the_place_and_the_value(captures):
    detail = captures.body("enqueue_sdxl_model_invalid_base_enum.json")["detail"]
    summary = summarize_validation_errors(detail)
    # The node type pydantic adds after the node id is left out.
    assert summary.startswith("batch.graph.nodes.sdxl_model_loader:6kYuTSM6Cu.model.base: ")
    assert summary.endswith("(got 'not-a-base'); and 1 more")
    many = [{"loc": ["body", "x"], "msg": "bad", "input": i} for i in range(5)]
    assert summarize_validation_errors(many).endswith("; and 2 more")


def test_not_found_is_an_invalid_request_with_the_servers_detail(captures):
    with pytest.raises(InvokeAIRequestError, match=r"\(404\): Not Found") as caught:
        check_response(answer(captures, "image_full_missing.json"), None)
    assert caught.value.status_code == 404


def test_board_list_without_parameters_is_a_400(captures):
    with pytest.raises(InvalidRequestError, match="Must provide either 'all'"):
        check_response(answer(captures, "boards_list_noparams.json"), None)


def response(status, body=None, headers=None):
    request = httpx.Request("GET", "http://h/api/v1/x")
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_status_codes_map_to_the_core_errors():
    with pytest.raises(InvokeAIAuthenticationError) as caught:
        check_response(response(401, {"detail": "Authentication required"}), None)
    assert isinstance(caught.value, AuthenticationError)
    assert isinstance(caught.value, ServerError)
    assert (caught.value.status, caught.value.work) == (401, "not_sent")
    with pytest.raises(GeneratorLimitError) as limited:
        check_response(response(503, {"detail": "busy"}, {"retry-after": "7"}), None)
    assert limited.value.retry_after == 7.0
    with pytest.raises(GeneratorLimitError):
        check_response(response(409, {"detail": "maintenance"}), None)
    with pytest.raises(GeneratorConnectionError):
        check_response(response(502), None)
    with pytest.raises(InvokeAIServerError) as server:
        check_response(response(500, {"detail": "boom"}), None)
    assert (server.value.status_code, server.value.detail) == (500, "boom")
    assert (server.value.status, server.value.body) == (500, "boom")
    assert isinstance(server.value, ServerError)
    with pytest.raises(InvokeAIRequestError) as refused:
        check_response(response(404, {"detail": "Not found"}), None)
    assert isinstance(refused.value, ServerError)
    assert (refused.value.status, refused.value.work) == (404, "not_sent")
    check_response(response(200, {}), None)  # success: nothing


def test_html_body_is_not_taken_for_json(captures):
    record = captures.record("rec_unknown_path_html.json")
    html = httpx.Response(
        200,
        text=record["body"],
        headers=record["headers"],
        request=httpx.Request("GET", "http://h/api/v1/app/version"),
    )
    with pytest.raises(GeneratorError, match="answered text/html, not InvokeAI's JSON"):
        json_body(html, None)


def test_transport_errors_and_whether_they_were_sent():
    request = httpx.Request("POST", "http://h/x")
    refused = httpx.ConnectError("refused", request=request)
    error = transport_error(refused, "POST", "http://h/x", "g")
    assert isinstance(error, GeneratorConnectionError)
    assert error.work == "not_sent"
    error.__cause__ = refused
    assert was_not_sent(error)
    for exc in (
        httpx.ReadTimeout("t", request=request),
        httpx.RemoteProtocolError("x", request=request),
    ):
        wrapped = transport_error(exc, "POST", "http://h/x", "g")
        assert wrapped.work == "unknown"
        wrapped.__cause__ = exc
        assert not was_not_sent(wrapped)
    assert isinstance(
        transport_error(httpx.ReadTimeout("t"), "GET", "u", None), GeneratorTimeoutError
    )
    assert isinstance(
        transport_error(httpx.PoolTimeout("t"), "GET", "u", None), GeneratorTimeoutError
    )
    assert was_not_sent(httpx.PoolTimeout("t"))


def test_a_transport_error_shows_no_password_of_the_url() -> None:
    import httpx as _httpx

    from degrees37_imagegen_invokeai._http import transport_error

    url = "http://me:hunter2@gpu:9090/api/v1/app/version"
    for exc in (_httpx.ConnectError("refused"), _httpx.ReadTimeout("slow"), _httpx.ReadError("x")):
        message = str(transport_error(exc, "GET", url))
        assert "hunter2" not in message
        assert "gpu:9090/api/v1/app/version" in message
