"""A pool of servers behind one generator: :class:`GeneratorPool`.

A configuration entry with ``servers:`` becomes a pool, one generator per server, with the
entry's other settings shared::

    generators:
      gpus:
        class: invokeai
        servers: [http://gpu1:9090, http://gpu2:9090]
        model: sdxl-base

Each image goes to the least busy server still in rotation. A server that fails with
:class:`~degrees37_imagegen.GeneratorConnectionError` is taken out of rotation and the image
is asked of another server. Only connection errors move an image: one that finished, or
failed for any other reason, is never asked of a second server.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..base import BaseImageGenerator, ImageInfo
from ..errors import ConfigError, GeneratorConnectionError, GeneratorError
from ..job import ImageJob
from ..progress import ProgressCallback
from ..redaction import redact, redact_url

__all__ = ["GeneratorPool", "PoolMember"]


@dataclass
class PoolMember:
    """One server of a pool: its generator, its address and how it is doing."""

    number: int
    server: str
    generator: BaseImageGenerator
    in_flight: int = 0
    assigned: int = 0
    alive: bool = True
    error: str | None = None

    @property
    def label(self) -> str:
        """The server's address, password hidden, for messages and the manifest."""
        return redact_url(self.server)


class GeneratorPool(BaseImageGenerator):
    """Several generators of one class, one per server, used as one generator.

    :meth:`submit` goes to the live member with the fewest jobs in flight (then the fewest
    given so far). When a member cannot be reached (the request was never sent), it is taken
    out of rotation and the same request goes to another; when none is left,
    :class:`GeneratorConnectionError` names every server and its last error. Jobs are the
    members' own: ``job.generator`` is the member, ``job.server`` its server.
    """

    def __init__(self, members: Sequence[BaseImageGenerator], *, name: str = "pool") -> None:
        if not members:
            raise ConfigError("a pool needs at least one server", key="servers")
        super().__init__(None, name=name, clock=members[0].clock if members else None)
        self._lock = threading.Lock()
        self.members: list[PoolMember] = []
        for number, generator in enumerate(members, 1):
            key = generator.server_setting
            server = str(generator.config.get(key, "")) if key else generator.name
            self.members.append(PoolMember(number, server, generator))
        first = members[0]
        self.known_options = first.known_options
        key = first.server_setting
        self.config = {
            "servers": [m.server for m in self.members],
            **{k: v for k, v in first.config.items() if k != key},
        }

    @classmethod
    def from_settings(
        cls, generator_class: type[BaseImageGenerator], settings: Mapping[str, Any], *, name: str
    ) -> GeneratorPool:
        """Make a pool from an entry's settings: ``servers`` plus the settings they share.

        Raises :class:`ConfigError` (``key="servers"`` or ``"servers[i]"``) when the class
        addresses no server, ``servers`` is not a list of addresses, or a member is invalid.
        """
        key = generator_class.server_setting
        servers = settings.get("servers")
        if key is None:
            raise ConfigError(
                f"{generator_class.__name__} does not talk to a server, "
                "so it cannot have 'servers'",
                key="servers",
            )
        if (
            not isinstance(servers, list)
            or not servers
            or not all(isinstance(s, str) and s.strip() for s in servers)
        ):
            raise ConfigError("must be a non-empty list of server addresses", key="servers")
        if key in settings:
            raise ConfigError(f"give either {key!r} or 'servers', not both", key="servers")
        seen: set[str] = set()
        for server in servers:
            if server.rstrip("/") in seen:
                raise ConfigError(f"server {redact_url(server)!r} is listed twice", key="servers")
            seen.add(server.rstrip("/"))
        shared = {k: v for k, v in settings.items() if k != "servers"}
        members: list[BaseImageGenerator] = []
        for i, server in enumerate(servers):
            try:
                members.append(generator_class({**shared, key: server}, name=name))
            except ConfigError as exc:
                if exc.key == key:
                    raise ConfigError(exc.problem, key=f"servers[{i}]") from None
                raise
        return cls(members, name=name)

    # -- choosing a member ---------------------------------------------------------------

    def live_members(self) -> list[PoolMember]:
        """The members still in rotation."""
        with self._lock:
            return [m for m in self.members if m.alive]

    def _acquire(self) -> PoolMember:
        with self._lock:
            live = [m for m in self.members if m.alive]
            if not live:
                raise GeneratorConnectionError(self._all_dead_message(), generator=self.name)
            member = min(live, key=lambda m: (m.in_flight, m.assigned, m.number))
            member.in_flight += 1
            member.assigned += 1
            return member

    def _release_for(self, member: PoolMember, job: ImageJob) -> None:
        self._release(member)

    def _release(self, member: PoolMember) -> None:
        with self._lock:
            member.in_flight -= 1

    def mark_dead(self, member: PoolMember, error: BaseException | str) -> None:
        """Take ``member`` out of rotation, remembering why."""
        with self._lock:
            member.alive = False
            member.error = str(error)

    def _all_dead_message(self) -> str:
        reasons = "; ".join(f"{m.label}: {m.error or 'out of rotation'}" for m in self.members)
        return f"pool {self.name!r}: no server left in rotation ({reasons})"

    def member_for(self, job: ImageJob) -> PoolMember:
        """The member that runs ``job``."""
        for member in self.members:
            if member.generator is job.generator:
                return member
        raise GeneratorError(
            f"pool {self.name!r}: job {job.id} is not one of this pool's", generator=self.name
        )

    # -- BaseImageGenerator ---------------------------------------------------------------

    def test_connection(self) -> bool:
        """Test every server at once: those that answer are (back) in rotation, the others
        out (with the reason in their ``error``). True when at least one answers."""

        def test(member: PoolMember) -> None:
            try:
                answer: bool | GeneratorError = member.generator.test_connection()
            except GeneratorError as exc:
                answer = exc
            self._tested(member, answer)

        # In parallel: a server that does not answer costs its timeout once, not once each.
        threads = [threading.Thread(target=test, args=(m,), daemon=True) for m in self.members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return any(m.alive for m in self.members)

    async def atest_connection(self) -> bool:
        """:meth:`test_connection` on the event loop: every server at once, each asked
        the way its plugin asks (natively async, or in a worker thread)."""
        import asyncio

        async def test(member: PoolMember) -> None:
            try:
                answer: bool | GeneratorError = await member.generator.atest_connection()
            except GeneratorError as exc:
                answer = exc
            self._tested(member, answer)

        await asyncio.gather(*(test(m) for m in self.members))
        return any(m.alive for m in self.members)

    def _tested(self, member: PoolMember, answer: bool | GeneratorError) -> None:
        """Put ``member`` (back) in rotation, or out of it with the reason, by its
        connection test's ``answer`` (whether it answered, or the error it raised)."""
        error: str | None
        if isinstance(answer, GeneratorError):
            ok, error = False, str(answer)
        else:
            ok = bool(answer)
            error = None if ok else "not ready"
        with self._lock:
            member.alive, member.error = ok, error

    def validate_dimensions(self, width: int, height: int) -> tuple[int, int]:
        """What the members (all of one class and settings) make of ``width`` x ``height``."""
        return self.members[0].generator.validate_dimensions(width, height)

    def submit(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        *,
        on_progress: ProgressCallback | None = None,
        on_sending: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> ImageJob:
        """Submit to the least busy live server; move on when one cannot be reached.

        The job returned is the member's own (its ``generator`` is the member). The member
        counts it as in flight until the job finishes. ``on_sending`` hears of each try,
        with the member's server.
        """
        while True:
            member = self._acquire()
            try:
                job = member.generator.submit(
                    prompt,
                    negative_prompt=negative_prompt,
                    width=width,
                    height=height,
                    seed=seed,
                    on_progress=on_progress,
                    on_sending=on_sending,
                    **options,
                )
            except GeneratorConnectionError as exc:
                self._release(member)
                if exc.work not in (None, "not_sent"):
                    raise
                self.mark_dead(member, exc)
                continue
            except BaseException:
                self._release(member)
                raise
            job.add_done_callback(functools.partial(self._release_for, member))
            self._remember(job)
            return job

    def attach(
        self, data: Mapping[str, Any], *, on_progress: ProgressCallback | None = None
    ) -> ImageJob:
        """Re-attach to a saved job through the member that addresses its server."""
        server = data.get("server") if isinstance(data, Mapping) else None
        for member in self.members:
            if member.generator.addresses(server):
                job = member.generator.attach(data, on_progress=on_progress)
                self._remember(job)
                return job
        raise GeneratorError(
            f"pool {self.name!r} has no server {server!r} for saved job {data.get('id')!r}",
            generator=self.name,
        )

    def job_timeout(self) -> float | None:
        """The members' own wait limit."""
        return self.members[0].generator.job_timeout()

    def image_info(self, image_id: str) -> ImageInfo | None:
        """What the member that made ``image_id`` recorded about it."""
        with self._images_lock:
            job = self._jobs.get(image_id)
        return job.info if job is not None else None

    def safe_config(self) -> dict[str, Any]:
        """The shared settings and the servers, secrets hidden."""
        return dict(redact(self.config, self.members[0].generator.secret_settings))

    def info(self) -> dict[str, Any]:
        """Name, member class, settings (secrets hidden) and each server's state."""
        data = super().info()
        data["class"] = f"GeneratorPool[{type(self.members[0].generator).__name__}]"
        data["servers"] = [
            {"server": m.label, "alive": m.alive, "error": m.error} for m in self.members
        ]
        return data

    def close(self) -> None:
        """Close every member."""
        for member in self.members:
            member.generator.close()
