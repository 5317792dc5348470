"""/stats/*: what the service is doing (cadences, providers, SLOs)."""
