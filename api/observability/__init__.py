"""/metrics, the API's Prometheus registry and the HTTP request-latency middleware (the API's side of
the metric catalog)."""
