"""TLS for Herald's gRPC servers and for the calls one Herald service makes to another.

HERALD_TLS_CERT_FILE + HERALD_TLS_KEY_FILE: this process's certificate; the gRPC server then
listens with TLS only, and the process presents the same pair as its client certificate.
HERALD_TLS_CA_FILE: clients verify servers against it (and connect with TLS at all only when
it is set); servers verify client certificates against it when HERALD_TLS_CLIENT_AUTH is on.
HERALD_TLS_SERVER_NAME: the name clients expect in the server certificate, when the address's
host is not in it. Plaintext in either direction is refused in production mode.

The server re-reads its certificate, key and CA when their files change (checked at each new
connection), so a rotated Kubernetes secret is served without a restart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import grpc

from shared import config
from shared.config import Setting

log = logging.getLogger("herald.tls")

_ON = {"1", "true", "yes", "on", "require"}
_OFF = {"", "0", "false", "no", "off"}


class TlsConfigError(ValueError):
    """A TLS setting is inconsistent or names a file that cannot be read; the message names it."""


def _read(setting: Setting) -> bytes:
    path = setting.get()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise TlsConfigError(f"{setting.name}={path!r}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN" not in data:
        raise TlsConfigError(f"{setting.name}={path!r}: not a PEM file")
    return data


def client_auth_required() -> bool:
    raw = config.TLS_CLIENT_AUTH.get().strip().lower()
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise TlsConfigError(f"{config.TLS_CLIENT_AUTH.name}={raw!r}: use 1 (or require) or 0")


def server_tls_configured() -> bool:
    return bool(config.TLS_CERT_FILE.get() or config.TLS_KEY_FILE.get())


def _key_pair() -> tuple[bytes, bytes] | None:
    """(private key, certificate chain) of this process, or None when neither is set."""
    cert, key = config.TLS_CERT_FILE.get(), config.TLS_KEY_FILE.get()
    if not cert and not key:
        return None
    if not (cert and key):
        missing = config.TLS_KEY_FILE.name if cert else config.TLS_CERT_FILE.name
        raise TlsConfigError(f"{missing} is not set: {config.TLS_CERT_FILE.name} and "
                             f"{config.TLS_KEY_FILE.name} go together")
    return _read(config.TLS_KEY_FILE), _read(config.TLS_CERT_FILE)


class _ServerFiles:
    """The server's PEM files and the state they were last loaded in."""

    def __init__(self, require_client_auth: bool) -> None:
        self.require = require_client_auth
        self.settings = [config.TLS_CERT_FILE, config.TLS_KEY_FILE]
        if require_client_auth:
            self.settings.append(config.TLS_CA_FILE)
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[Any, ...]:
        out = []
        for s in self.settings:
            try:
                st = os.stat(s.get())
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        pair = _key_pair()
        assert pair is not None
        ca = _read(config.TLS_CA_FILE) if self.require else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new handshake: a new configuration when a file changed."""
        stamp = self._stamp()
        if stamp == self.stamp:
            return None
        try:
            cfg = self.configuration()
        except TlsConfigError as exc:
            # Mid-rotation (one file written, not yet the other) or a bad file: keep serving
            # the previous certificate and try again at the next connection.
            log.warning("TLS files changed but cannot be loaded; still serving the previous ones",
                        extra={"error": str(exc)})
            return None
        self.stamp = stamp
        log.info("TLS certificate reloaded", extra={"cert_file": config.TLS_CERT_FILE.get()})
        return cfg


def server_credentials() -> grpc.ServerCredentials | None:
    """TLS credentials of the gRPC server, or None for plaintext (no certificate configured)."""
    require = client_auth_required()
    if not server_tls_configured():
        if require:
            raise TlsConfigError(f"{config.TLS_CLIENT_AUTH.name} needs {config.TLS_CERT_FILE.name} "
                                 f"and {config.TLS_KEY_FILE.name}")
        return None
    if require and not config.TLS_CA_FILE.get():
        raise TlsConfigError(f"{config.TLS_CLIENT_AUTH.name} needs {config.TLS_CA_FILE.name} "
                             "(the CA that signs client certificates)")
    files = _ServerFiles(require)
    return grpc.dynamic_ssl_server_credentials(files.configuration(), files.fetch,
                                               require_client_authentication=require)


def client_credentials() -> grpc.ChannelCredentials | None:
    """Credentials for calls to another Herald service, or None for plaintext (no CA set)."""
    if not config.TLS_CA_FILE.get():
        if config.PRODUCTION.get_bool():
            raise TlsConfigError(f"{config.TLS_CA_FILE.name} is not set: production mode "
                                 "refuses plaintext calls to other services")
        return None
    ca = _read(config.TLS_CA_FILE)
    pair = _key_pair()
    key, chain = pair if pair is not None else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=chain)


def open_channel(addr: str, credentials: grpc.ChannelCredentials | None,
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A channel to addr: TLS with `credentials`, plaintext when they are None."""
    if credentials is None:
        return grpc.aio.insecure_channel(addr, options=list(options))
    opts = list(options)
    name = config.TLS_SERVER_NAME.get()
    if name:
        opts.append(("grpc.ssl_target_name_override", name))
    return grpc.aio.secure_channel(addr, credentials, options=opts)


def channel(addr: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A channel to another Herald service, configured from HERALD_TLS_*."""
    return open_channel(addr, client_credentials(), options)
