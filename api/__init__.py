"""The read API (Litestar): prices, history, WebSockets, stats and ops over Postgres."""
