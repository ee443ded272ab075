from __future__ import annotations

import asyncio
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen import (
    ConfigError,
    GeneratorConnectionError,
    GeneratorRegistry,
    generate_to_file,
    read_png_text,
)
from degrees37_imagegen.batch import BatchRunner, GeneratorPool, parse_jobs

MakePool = Callable[..., GeneratorPool]
Servers = dict[str, Any]


def jobs(n: int) -> list[Any]:
    return parse_jobs([f"scene {i}" for i in range(1, n + 1)], defaults={"width": 16, "height": 24})


def made(servers: Servers) -> Counter[str]:
    return Counter(p for s in servers.values() for p in s.made)


def test_jobs_spread_over_every_server_with_bounded_queues(
    tmp_path: Path, make_pool: MakePool, fake_servers: Servers
) -> None:
    pool = make_pool(3, delay=0.005)
    results = list(BatchRunner(pool, tmp_path, concurrency=2).run(jobs(30)))
    assert {r.status for r in results} == {"done"}
    assert made(fake_servers) == Counter(f"scene {i}" for i in range(1, 31))
    for server in fake_servers.values():
        assert server.made, f"{server.url} was never used"
        assert server.max_waiting <= 2
    servers = {r.server for r in results}
    assert servers == {"fake://s1", "fake://s2", "fake://s3"}
    for r in results:
        assert r.image_id is not None
        assert ":" not in r.image_id


def _kill_after(servers: Servers, url: str, images: int, *, downloads_too: bool) -> None:
    servers[url].die_after = images
    servers[url].downloads_too = downloads_too


def test_a_server_that_dies_mid_batch_moves_its_jobs_and_nothing_is_made_twice(
    tmp_path: Path, make_pool: MakePool, fake_servers: Servers
) -> None:
    pool = make_pool(3, delay=0.002)
    pool.members[1].generator.server  # noqa: B018 (creates the fake server)
    _kill_after(fake_servers, "fake://s2", 3, downloads_too=False)
    runner = BatchRunner(pool, tmp_path, concurrency=2)
    results = list(runner.run(jobs(24)))
    assert sorted(r.job.index for r in results) == list(range(1, 25))  # each job once
    assert {r.status for r in results} == {"done"}
    assert made(fake_servers) == Counter(f"scene {i}" for i in range(1, 25))  # each made once
    assert len(fake_servers["fake://s2"].made) == 3
    assert [m.alive for m in pool.members] == [True, False, True]
    assert "connection refused" in (pool.members[1].error or "")
    assert all((tmp_path / r.job.filename).is_file() for r in results)


def test_a_server_that_dies_with_images_not_yet_downloaded(
    tmp_path: Path, make_pool: MakePool, fake_servers: Servers
) -> None:
    # The last image it made cannot be fetched any more: that job is made again elsewhere,
    # and it is the only one made twice.
    pool = make_pool(2, delay=0.002)
    pool.members[0].generator.server  # noqa: B018
    _kill_after(fake_servers, "fake://s1", 2, downloads_too=True)
    results = list(BatchRunner(pool, tmp_path, concurrency=2).run(jobs(12)))
    assert sorted(r.job.index for r in results) == list(range(1, 13))
    assert {r.status for r in results} == {"done"}
    s1 = fake_servers["fake://s1"]
    lost = Counter(s1.made) - Counter(s1.downloaded)
    assert made(fake_servers) == Counter(f"scene {i}" for i in range(1, 13)) + lost
    moved = [r for r in results if r.attempts > 1]
    assert {r.job.prompt for r in moved} == set(lost)
    assert all(r.server == "fake://s2" for r in moved)


def test_when_every_server_is_gone_the_remaining_jobs_fail_clearly(
    tmp_path: Path, make_pool: MakePool, fake_servers: Servers
) -> None:
    pool = make_pool(2)
    for member in pool.members:
        member.generator.server.die_after = 2
    # No outage tolerance: jobs fail at once instead of waiting for a server to answer.
    runner = BatchRunner(pool, tmp_path, concurrency=1, outage_tolerance=0)
    results = list(runner.run(jobs(10)))
    done = [r for r in results if r.status == "done"]
    failed = [r for r in results if r.status == "failed"]
    assert len(done) == 4
    assert len(failed) == 6
    assert failed[-1].error == (
        "pool 'gpus': no server left in rotation (fake://s1: fake://s1: connection refused; "
        "fake://s2: fake://s2: connection refused)"
    )
    assert failed[-1].error_type == "GeneratorConnectionError"


def test_other_failures_are_not_moved(
    tmp_path: Path, make_pool: MakePool, fake_servers: Servers
) -> None:
    pool = make_pool(3)
    batch = parse_jobs(["ok 1", "FAIL here", "ok 2"], defaults={"width": 8, "height": 8})
    results = {r.job.index: r for r in BatchRunner(pool, tmp_path).run(batch)}
    assert results[2].status == "failed"
    assert results[2].attempts == 1
    assert all(m.alive for m in pool.members)


def test_pool_as_a_generator(tmp_path: Path, make_pool: MakePool) -> None:
    pool = make_pool(2)
    first = pool.generate_image("one", width=8, height=8, seed=3)
    second = pool.generate_image("two", width=8, height=8)
    assert first is not None
    assert second is not None
    members = {pool.member_for(pool.job(first)).number, pool.member_for(pool.job(second)).number}
    assert members == {1, 2}  # least busy, then fair
    info = pool.image_info(first)
    assert info is not None
    assert (info.image_id, info.seed, info.prompt) == (first, 3, "one")
    assert pool.image_info("nope") is None
    assert pool.download_image(second, tmp_path / "two.png")
    result = generate_to_file(pool, tmp_path / "three.png", "three", width=8, height=8)
    assert read_png_text(result.path)["imagegen:prompt"] == "three"
    assert pool.validate_dimensions(8, 8) == (8, 8)


def test_pool_moves_a_request_on_a_connection_error(
    make_pool: MakePool, fake_servers: Servers
) -> None:
    pool = make_pool(2)
    pool.members[0].generator.server.dead = True
    made = pool.generate_image("x", width=8, height=8)
    assert made is not None
    assert pool.member_for(pool.job(made)).number == 2
    assert [m.alive for m in pool.members] == [False, True]
    fake_servers["fake://s2"].dead = True
    with pytest.raises(GeneratorConnectionError, match="no server left in rotation"):
        pool.generate_image("y", width=8, height=8)


def test_test_connection_brings_servers_back(make_pool: MakePool, fake_servers: Servers) -> None:
    pool = make_pool(2)
    pool.members[0].generator.server.dead = True
    assert pool.test_connection() is True
    assert [m.alive for m in pool.members] == [False, True]
    fake_servers["fake://s1"].dead = False
    assert pool.test_connection() is True
    assert [m.alive for m in pool.members] == [True, True]


def test_atest_connection_asks_every_server_at_once_on_the_loop(
    make_pool: MakePool, fake_servers: Servers
) -> None:
    pool = make_pool(3)
    pool.members[1].generator.server.dead = True
    assert asyncio.run(pool.atest_connection()) is True
    assert [m.alive for m in pool.members] == [True, False, True]
    assert pool.members[1].error == "not ready"
    for member in pool.members:
        member.generator.server.dead = True
    assert asyncio.run(pool.atest_connection()) is False


def test_info_hides_secrets(fake_cls: Any) -> None:
    pool = GeneratorPool.from_settings(
        fake_cls,
        {"servers": ["http://me:hunter2@gpu1:9090", "http://gpu2:9090"], "token": "s3cret"},
        name="gpus",
    )
    text = repr(pool.info())
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert pool.info()["class"] == "GeneratorPool[FakeGenerator]"
    assert pool.members[0].label == "http://me:***@gpu1:9090"


# -- configuration -----------------------------------------------------------------------


def registry(tmp_path: Path, fake_cls: Any, text: str) -> GeneratorRegistry:
    path = tmp_path / "generators.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    reg = GeneratorRegistry(path, discover=False)
    reg.register("fake", fake_cls)
    return reg


def test_an_entry_with_servers_is_a_pool(tmp_path: Path, fake_cls: Any) -> None:
    reg = registry(
        tmp_path,
        fake_cls,
        """
        generators:
          gpus:
            class: fake
            servers: [fake://a, fake://b]
            delay: 0.5
        """,
    )
    pool = reg.get_generator("gpus")
    assert isinstance(pool, GeneratorPool)
    assert [m.server for m in pool.members] == ["fake://a", "fake://b"]
    assert [m.generator.config["delay"] for m in pool.members] == [0.5, 0.5]
    assert pool.name == "gpus"
    assert pool.members[0].generator.name == "gpus"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "servers: fake://a",
            "generators.gpus.servers: must be a non-empty list of server addresses",
        ),
        ("servers: []", "generators.gpus.servers: must be a non-empty list of server addresses"),
        (
            "servers: [fake://a]\n    url: fake://b",
            "generators.gpus.servers: give either 'url' or 'servers', not both",
        ),
        (
            "servers: [fake://a, fake://a/]",
            "generators.gpus.servers: server 'fake://a/' is listed twice",
        ),
    ],
)
def test_bad_servers_name_file_and_key(
    tmp_path: Path, fake_cls: Any, entry: str, message: str
) -> None:
    reg = registry(tmp_path, fake_cls, f"generators:\n  gpus:\n    class: fake\n    {entry}\n")
    with pytest.raises(ConfigError) as info:
        reg.get_generator("gpus")
    assert message in str(info.value)
    assert str(tmp_path / "generators.yaml") in str(info.value)


def test_a_generator_without_a_server_cannot_be_pooled(tmp_path: Path) -> None:
    path = tmp_path / "generators.yaml"
    path.write_text(
        "generators:\n  many:\n    class: mock\n    servers: [a, b]\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="MockGenerator does not talk to a server"):
        GeneratorRegistry(path).get_generator("many")
