"""Putting a pool's servers back into rotation: :func:`revive_due`.

A pool takes a server that does not answer out of rotation. Rather than leave it out for
the rest of the run, the batch probes it again (``test_connection``) with backoff, 1 s
then doubling up to a minute, before jobs are submitted; one that answers is back in
rotation.
"""

from __future__ import annotations

import threading
import weakref

from .pool import GeneratorPool, PoolMember

__all__ = ["revive_due"]

_FIRST, _MAX = 1.0, 60.0

#: Per pool, per member number: (when it may be probed next, the wait after that), on the
#: pool's clock.
_schedules: weakref.WeakKeyDictionary[GeneratorPool, dict[int, tuple[float, float]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def revive_due(pool: GeneratorPool) -> int:
    """Probe the members out of rotation whose next probe is due; return how many came back."""
    now = pool.clock.monotonic()
    due: list[PoolMember] = []
    with _lock:
        schedule = _schedules.setdefault(pool, {})
        for member in pool.members:
            if member.alive:
                schedule.pop(member.number, None)
                continue
            if member.number not in schedule:
                # First seen out of rotation: probe it after the first wait.
                schedule[member.number] = (now + _FIRST, _FIRST)
                continue
            at, wait = schedule[member.number]
            if at <= now:
                schedule[member.number] = (now + min(_MAX, wait * 2), min(_MAX, wait * 2))
                due.append(member)
    back = 0
    for member in due:
        try:
            ok = bool(member.generator.test_connection())
        except Exception:
            ok = False
        if ok:
            with pool._lock:
                member.alive, member.error = True, None
            back += 1
    return back
