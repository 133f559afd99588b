"""The Hyperliquid simulator: a deterministic market (`market`), the exchange's JSON (`wire`), its weight limit
(`ratelimit`), fault injection (`chaos`) and the ASGI server with `SimServer` (`server`); see docs/simulator.md."""
