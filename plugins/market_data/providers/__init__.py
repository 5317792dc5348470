"""Market-data providers: one module per adapter kind, each exporting a `ProviderSpec` as `SPEC`.

A kind is the name of a module of this package (the policy's `providers.<name>.kind`, or the
name). `spec_for` finds that module on the package's `__path__` and imports only it, so a
process that uses only the synthetic provider never loads the HTTP adapters (httpx); adding
a vendor is adding one module. The vendor adapters share `http` (the `VendorAdapter` base:
client, statuses to errors) and `alignment` (vendor bars to the calendar's bars).
"""

from __future__ import annotations

import importlib
import importlib.util
import re

from market_data.policy.schema import ProviderPolicy
from market_data.providers.base import BarRequest, Capabilities, Provider, ProviderSpec
from market_data.providers.credentials import MissingCredentialsError

_KIND = re.compile(r"[a-z][a-z0-9_]*")


class UnknownAdapterError(ValueError):
    pass


def spec_for(kind: str) -> ProviderSpec:
    """The spec of an adapter kind: `SPEC` of the module `market_data.providers.<kind>`.

    Raises:
        UnknownAdapterError: no module of that name, or one that exports no `SPEC` (base, http...).
    """
    module_name = f"{__name__}.{kind}"
    if not _KIND.fullmatch(kind) or importlib.util.find_spec(module_name) is None:
        raise UnknownAdapterError(f"unknown adapter {kind!r}")
    spec = getattr(importlib.import_module(module_name), "SPEC", None)
    if not isinstance(spec, ProviderSpec):
        raise UnknownAdapterError(f"unknown adapter {kind!r}")
    if spec.kind != kind:
        raise TypeError(f"{module_name}.SPEC.kind is {spec.kind!r}: a kind is its module's name")
    return spec


def build_provider(name: str, cfg: ProviderPolicy) -> Provider:
    """Instantiate the adapter a policy's provider section names.

    Raises:
        UnknownAdapterError: no adapter module of that kind.
        MissingCredentialsError: the adapter needs credentials and none are configured.
    """
    kind = cfg.adapter(name)
    try:
        spec = spec_for(kind)
    except UnknownAdapterError:
        raise UnknownAdapterError(f"providers.{name}.kind: unknown adapter {kind!r}") from None
    return spec.build(name, cfg)


__all__ = [
    "BarRequest",
    "Capabilities",
    "MissingCredentialsError",
    "Provider",
    "ProviderSpec",
    "UnknownAdapterError",
    "build_provider",
    "spec_for",
]
