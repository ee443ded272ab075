"""The async drivers' httpx client: the same URLs as httpx's own, for any base and path."""

from __future__ import annotations

import httpx
import pytest

from degrees37_imagegen._aiohttp import AsyncClient

BASES = ["http://127.0.0.1:8188", "http://user:secret@gpu:9090/sub/path", "https://h/x/"]
PATHS = [
    "/prompt",
    "/history/0b7c2f7e-8d4f-4bd8",
    "/api/v1/queue/default/enqueue_batch",
    "/",
    "/a b",
    "/caf\u00e9",
    "/x?y=1",
    "relative",
    "http://elsewhere/abs",
]


@pytest.mark.parametrize("base", BASES)
def test_urls_are_httpx_own(base: str) -> None:
    ours, theirs = AsyncClient(base_url=base), httpx.AsyncClient(base_url=base)
    for _ in range(2):  # made, then kept
        for path in PATHS:
            for params in (None, {"filename": "a b.png", "type": "output"}):
                got = ours.build_request("GET", path, params=params).url
                want = theirs.build_request("GET", path, params=params).url
                assert str(got) == str(want), (base, path, params)
                assert got.raw_path == want.raw_path


def test_it_keeps_only_so_many_urls() -> None:
    client = AsyncClient(base_url="http://h")
    for i in range(200):
        client.build_request("GET", f"/history/{i}")
    assert len(client._merged) == 64
    assert str(client.build_request("GET", "/history/199").url) == "http://h/history/199"
