"""Provider errors, one class per way a provider call can fail.

`should_retry` is the single predicate that both tenacity retries and the circuit
breaker use, so "is this worth trying again" is decided in exactly one place.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every provider failure."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status
        self.message = message

    @property
    def code(self) -> str:
        """Short label for metrics (`provider_errors_total{code=...}`)."""
        return str(self.status) if self.status is not None else type(self).__name__


class AuthError(ProviderError):
    """401/403: bad or missing credentials, or a plan without access. Never retried."""


class RateLimitedError(ProviderError):
    """429 (or a vendor's equivalent). Retried after `retry_after` seconds when given."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class ServerError(ProviderError):
    """5xx, timeouts and connection failures: the provider is unwell. Retried."""


class RequestError(ProviderError):
    """4xx other than auth and rate limits: our request is wrong (unknown symbol, bad range)."""


class EmptyDataError(ProviderError):
    """The provider answered but has nothing for a request that must return something
    (e.g. a quote). Bars with no data come back as an empty list instead."""


class BadPayloadError(ProviderError):
    """The body does not match the provider's documented shape (malformed JSON, text)."""


def should_retry(exc: BaseException) -> bool:
    """Whether a failed provider call is worth retrying (same provider, later)."""
    return isinstance(exc, RateLimitedError | ServerError)


def counts_against_breaker(exc: BaseException) -> bool:
    """Whether a failure says the provider is unhealthy (opens the breaker eventually).

    Auth errors open it at once (see the registry); request errors are our fault and
    empty data is an answer, so neither counts.
    """
    return isinstance(exc, RateLimitedError | ServerError | BadPayloadError | AuthError)
