"""The only modules that touch third-party libraries' private internals.

Each adapter exposes small public functions for what Herald needs and a `self_check()`
that verifies, without a server, that the private attributes and signatures it relies on
still exist and behave; every process calls `self_check_all()` at start-up so that a
library upgrade that changed them stops the process with one clear line instead of
failing later on a hot path. The version bounds in pyproject.toml name the releases the
adapters were checked against.
"""

from __future__ import annotations

from importlib import metadata


class AdapterError(RuntimeError):
    """A library's internals are not what its adapter expects."""

    def __init__(self, distribution: str, what: str) -> None:
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            version = "(not installed)"
        self.distribution = distribution
        self.version = version
        super().__init__(f"{distribution} {version}: {what}; Herald's adapter for it needs "
                         "updating (see the version bounds in pyproject.toml)")


def self_check_all() -> None:
    """The self-checks of the adapters a Herald process uses (smpplib's serves only the
    benchmark); raises AdapterError on the first mismatch."""
    from shared.adapters import aiohttp_internals, nats_internals, redis_internals

    nats_internals.self_check()
    redis_internals.self_check()
    aiohttp_internals.self_check()
