"""/ops/*: operator endpoints behind a bearer token, every call audited."""
