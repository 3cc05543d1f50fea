"""Where the gateway's signing keys (tracking/unsubscribe tokens, VERP addresses) come from.

Whoever holds a signing key can make click tokens that redirect anywhere and forge
unsubscribes, so a key must be secret:
- outside development mode, HERALD_TRACKING_KEYS is required; a missing key, or a key
  published in Herald's own sources, stops the gateway before it serves anything;
- in development mode (HERALD_DEV_MODE=1, `make run`) without HERALD_TRACKING_KEYS, the
  key is random, made on the first start and kept in a file (HERALD_TRACKING_DEV_KEY_FILE),
  so links in mails already sent keep working across restarts of the local stack.
A published key is refused in both modes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from gateways.email import tokens

# Keys that were ever public (the former built-in development default): never accepted.
PUBLISHED_KEYS = frozenset({b"herald-dev-tracking-key-not-secret"})


class KeyConfigError(Exception):
    """The gateway must not start: the message names the setting to fix."""


def tracking_keys(configured: str, dev_mode: bool, dev_key_file: Path) -> tuple[list[bytes], str]:
    """(keys, where they came from). Raises KeyConfigError."""
    if configured.replace(",", "").strip():
        keys = tokens.parse_keys(configured)
        if any(k in PUBLISHED_KEYS for k in keys):
            raise KeyConfigError(
                "HERALD_TRACKING_KEYS holds the public development key from Herald's sources "
                "(anyone could sign tracking links with it): set a secret key; refusing to start")
        return keys, "HERALD_TRACKING_KEYS"
    if not dev_mode:
        raise KeyConfigError(
            "HERALD_TRACKING_KEYS is not set: the email gateway needs a secret key to sign "
            "tracking and unsubscribe links (HERALD_DEV_MODE=1 makes a random local one); "
            "refusing to start")
    return [dev_key(dev_key_file)], str(dev_key_file)


def dev_key(path: Path) -> bytes:
    """The random key in `path`, made there first if missing. Safe when several gateways
    start at once: the file appears whole (hard link of a finished temporary file), and
    whoever loses the race reads the winner's key."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes().strip()
        if key:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode("ascii") + b"\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    key = path.read_bytes().strip()
    if not key:
        raise KeyConfigError(f"{path} (HERALD_TRACKING_DEV_KEY_FILE) is empty: delete it")
    return key
