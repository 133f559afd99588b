"""Fault injection: which requests answer 5xx or late, which connections drop, which frames are malformed.

A random stream of its own (seeded from the market seed unless `chaos_seed` is given), so turning chaos on
never changes the market's trades. Malformed frames are always *extra* frames sent before a real message:
nothing real is withheld, so ground truth stays observable, and a client must reject them without harm.
"""

from __future__ import annotations

import random

import orjson

from hyperfollow.sim.config import MALFORMED_KINDS, SimConfig

__all__ = ["Chaos"]


class Chaos:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        seed = config.chaos_seed if config.chaos_seed is not None else config.seed
        self.rng = random.Random(f"chaos:{seed}")
        self.counts = {"errors_5xx": 0, "slow_answers": 0, "disconnects": 0, "malformed_frames": 0}

    # --- REST ---------------------------------------------------------------------------------------------------
    def rest_error(self) -> int | None:
        """An HTTP status 500/502/503 to answer instead, or None."""
        p = self.config.error_probability
        if p and self.rng.random() < p:
            self.counts["errors_5xx"] += 1
            return self.rng.choice((500, 502, 503))
        return None

    def rest_delay(self) -> float:
        p = self.config.slow_probability
        if p and self.rng.random() < p:
            self.counts["slow_answers"] += 1
            return self.config.slow_delay_s
        return 0.0

    # --- WebSocket ----------------------------------------------------------------------------------------------
    def connection_lifetime(self) -> float | None:
        """How long a new connection may live before chaos drops it (None: forever)."""
        interval = self.config.disconnect_interval_s
        if not interval:
            return None
        return interval * self.rng.uniform(0.5, 1.5)

    def drop_after_message(self) -> bool:
        p = self.config.disconnect_probability
        return bool(p) and self.rng.random() < p

    def malformed_frame(self, coin: str) -> str | None:
        """A bad frame to send before a real trades message, or None."""
        p = self.config.malformed_probability
        kinds = [k for k in self.config.malformed_kinds if k in MALFORMED_KINDS]
        if not p or not kinds or self.rng.random() >= p:
            return None
        self.counts["malformed_frames"] += 1
        kind = self.rng.choice(kinds)
        if kind == "invalid_json":
            return '{"channel":"trades","data":[{"coin":"' + coin + '","side":"B","px":"1'
        if kind == "text":
            return "Internal server error: please retry"
        if kind == "wrong_shape":
            return self.rng.choice((
                orjson.dumps({"channel": "trades", "data": {"coin": coin}}).decode(),
                orjson.dumps({"channel": "trades", "data": [{"coin": coin, "side": "X", "px": 1.5, "sz": None,
                                                             "time": "soon", "users": "nobody"}]}).decode(),
                orjson.dumps({"channel": "trades"}).decode(),
                orjson.dumps(["trades", coin]).decode(),
            ))
        # bad_address: a trade whose users are not addresses
        return orjson.dumps({"channel": "trades", "data": [{
            "coin": coin, "side": "B", "px": "1.0", "sz": "1.0", "time": 0, "hash": "0x" + "0" * 64, "tid": 1,
            "users": [self.rng.choice(("0x123", "not-an-address", "0x" + "g" * 40, "")),
                      "0x" + "zz" * 20]}]}).decode()
