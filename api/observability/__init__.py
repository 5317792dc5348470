"""/metrics and the HTTP request-latency middleware (the API's side of the metric catalog)."""
