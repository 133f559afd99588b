"""The shard's feeder lease: a Redis key holding the feeder's id with a TTL, renewed while it feeds.

Every `hyperfollow worker` pod of a shard runs a feeder candidate; the one holding `feeder:{shard}:lock`
feeds, the others retry now and then, so when the feeder's pod dies another takes over within one lease
lifetime. The value is the holder's id (`POD_NAME` in Kubernetes), which the operator shows in the shard's
status. All three operations are one Lua script (`lease.lua`), so a feeder never renews or deletes a lease
that expired and was taken by another.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import redis

from hyperfollow.core.keys import RedisKeys

__all__ = ["FeederLease", "owner_id"]

_SCRIPT = (Path(__file__).parent / "lease.lua").read_text()


def owner_id() -> str:
    """`POD_NAME` when set (the operator's pods), else host:pid:random (unique per process)."""
    pod = os.environ.get("POD_NAME", "").strip()
    if pod:
        return pod
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class FeederLease:
    def __init__(self, client: redis.Redis, keys: RedisKeys, shard: str, owner: str, ttl_s: float) -> None:
        self.key = keys.feeder_lock(shard)
        self.owner = owner
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self._script = client.register_script(_SCRIPT)
        self._client = client

    def _call(self, op: str) -> bool:
        return bool(self._script(keys=[self.key], args=[op, self.owner, self.ttl_ms]))

    def acquire(self) -> bool:
        """Take the lease if it is free (or already ours); True when we hold it."""
        return self._call("acquire")

    def renew(self) -> bool:
        """Extend our lease; False when it was lost (expired, and maybe taken by another)."""
        return self._call("renew")

    def release(self) -> bool:
        """Give the lease up (only if we hold it), so a standby takes over at once."""
        return self._call("release")

    def holder(self) -> str | None:
        value = self._client.get(self.key)
        return value.decode(errors="replace") if value else None
