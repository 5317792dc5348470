"""WebSockets: live bars and quotes from the ingest path's `pg_notify`, fanned out per process.

- `protocol`: the wire format (requests, replies, close codes) and its validation
- `limits`: per-process limits (`MD_WS_*` overrides), the per-client request bucket
- `backend`: Litestar's AsyncPgChannelsBackend, reconnecting
- `hub`: subscriptions index and non-blocking fan-out into per-client backlogs
- `session`: one connection (requests, snapshot, sender task, slow-client handling); it sees
  the hub through `SessionHub`
- `subscriptions`: what a subscribe or unsubscribe request changes (rules, no I/O)
- `snapshot`: the SQL of the snapshot sent on subscribe
- `controller`: WS /ws and WS /ws/{symbol}
- `feed`: wiring into the app (channels plugin, hub, lifespan)
"""
