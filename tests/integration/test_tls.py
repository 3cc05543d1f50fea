"""TLS on real service processes: campaigns serves TLS, recipients mutual TLS, and campaigns
calls recipients with its own certificate. Certificates are made here with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc

from cli import procs
from shared import tls

WS = (("x-herald-workspace", "ws-tls"),)
SERVICE_NAME = "recipients.herald.svc"  # a DNS name in the service certificate


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path  # server and client usage: what a Herald service presents both ways
    server_key: Path
    client_cert: Path  # client usage only: an operator's or another client's certificate
    client_key: Path

    def server_env(self, client_auth: bool) -> dict[str, str]:
        return {"HERALD_TLS_CERT_FILE": str(self.server_cert),
                "HERALD_TLS_KEY_FILE": str(self.server_key),
                "HERALD_TLS_CA_FILE": str(self.ca),
                "HERALD_TLS_CLIENT_AUTH": "require" if client_auth else "0"}

    def credentials(self, with_cert: bool = True) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.ca.read_bytes(),
            self.client_key.read_bytes() if with_cert else None,
            self.client_cert.read_bytes() if with_cert else None)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_pki(folder: Path) -> Pki:
    """A CA, a service certificate for 127.0.0.1/localhost/SERVICE_NAME and a client one."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Herald test CA")).issuer_name(_name("Herald test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(stem: str, usages: list[x509.ObjectIdentifier], sans: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(f"herald-{stem}")).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{stem}.key").write_bytes(_pem_key(key))
        return folder / f"{stem}.pem", folder / f"{stem}.key"

    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = leaf("service", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                  [x509.DNSName("localhost"), x509.DNSName(SERVICE_NAME),
                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = leaf("client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    return Pki(folder / "ca.pem", *server, *client)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory, nats_url: str, pki: Pki
              ) -> Iterator[tuple[procs.Proc, procs.Proc]]:
    """recipients requiring client certificates; campaigns with TLS (no client certificates
    required) calling recipients with its own certificate."""
    work = tmp_path_factory.mktemp("tls-stack")
    common = {"HERALD_NATS_URL": nats_url, "HERALD_GRPC_ADDR": "127.0.0.1:0",
              "HERALD_METRICS_ADDR": "127.0.0.1:0", "HERALD_LOG_FORMAT": "text"}
    rec = procs.start_module("recipients", "services.recipients", work, {
        **common, **pki.server_env(client_auth=True),
        "HERALD_DB_URL": f"sqlite+aiosqlite:///{work / 'recipients.db'}",
        "HERALD_HEALTH_ADDR": "127.0.0.1:0"})
    try:
        camp = procs.start_module("campaigns", "services.campaigns", work, {
            **common, **pki.server_env(client_auth=False),
            "HERALD_DB_URL": f"sqlite+aiosqlite:///{work / 'campaigns.db'}",
            "HERALD_RECIPIENTS_ADDR": f"127.0.0.1:{rec.info['grpc_port']}",
            "HERALD_STATS_ADDR": f"127.0.0.1:{procs.free_port()}"})
    except BaseException:
        rec.stop()
        raise
    yield rec, camp
    camp.stop()
    rec.stop()
    assert camp.popen.returncode == 0, camp.log_tail()
    assert rec.popen.returncode == 0, rec.log_tail()


@pytest.fixture
async def channels() -> AsyncIterator[list[grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []
    yield opened
    for ch in opened:
        await ch.close()


def _open(channels: list[grpc.aio.Channel], addr: str,
          credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    ch = (grpc.aio.secure_channel(addr, credentials) if credentials is not None
          else grpc.aio.insecure_channel(addr))
    channels.append(ch)
    return ch


async def _health(ch: grpc.aio.Channel, service: str = "") -> int:
    resp = await health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5)
    return resp.status


async def test_tls_server_answers_clients_with_the_ca_and_refuses_plaintext(
        tls_stack: tuple[procs.Proc, procs.Proc], pki: Pki, channels: list[grpc.aio.Channel]) -> None:
    _, camp = tls_stack
    addr = f"127.0.0.1:{camp.info['grpc_port']}"
    ca_only = _open(channels, addr, grpc.ssl_channel_credentials(pki.ca.read_bytes()))
    assert await _health(ca_only, "herald.v1.CampaignService") == health_pb2.HealthCheckResponse.SERVING
    listed = await cgrpc.CampaignServiceStub(ca_only).ListCampaigns(
        cpb.ListCampaignsRequest(), metadata=WS, timeout=5)
    assert list(listed.campaigns) == []

    plain = _open(channels, addr, None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cgrpc.CampaignServiceStub(plain).ListCampaigns(cpb.ListCampaignsRequest(), metadata=WS, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    # A server certificate from another CA is not trusted.
    other = write_pki(pki.ca.parent / "other")
    stranger = _open(channels, addr, grpc.ssl_channel_credentials(other.ca.read_bytes()))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _health(stranger)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_a_client_without_certificate(
        tls_stack: tuple[procs.Proc, procs.Proc], pki: Pki, channels: list[grpc.aio.Channel]) -> None:
    rec, _ = tls_stack
    addr = f"127.0.0.1:{rec.info['grpc_port']}"
    no_cert = _open(channels, addr, pki.credentials(with_cert=False))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rgrpc.RecipientServiceStub(no_cert).ListContacts(rpb.ListContactsRequest(), metadata=WS, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    with_cert = _open(channels, addr, pki.credentials())
    assert await _health(with_cert, "herald.v1.RecipientService") == health_pb2.HealthCheckResponse.SERVING
    await rgrpc.RecipientServiceStub(with_cert).ListContacts(rpb.ListContactsRequest(), metadata=WS, timeout=5)

    # The plaintext health-only port answers probes, and nothing else.
    probe = _open(channels, f"127.0.0.1:{rec.info['health_port']}", None)
    assert await _health(probe) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rgrpc.RecipientServiceStub(probe).ListContacts(rpb.ListContactsRequest(), metadata=WS, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_campaigns_reads_a_contact_from_recipients_over_mutual_tls(
        tls_stack: tuple[procs.Proc, procs.Proc], pki: Pki, channels: list[grpc.aio.Channel]) -> None:
    rec, camp = tls_stack
    recipients = rgrpc.RecipientServiceStub(
        _open(channels, f"127.0.0.1:{rec.info['grpc_port']}", pki.credentials()))
    up = await recipients.UpsertContacts(rpb.UpsertContactsRequest(contacts=[
        rpb.Contact(external_id="tls-1", first_name="Robin", phone="+447700900401")]), metadata=WS, timeout=5)
    contact_id = up.results[0].contact_id
    campaigns = cgrpc.CampaignServiceStub(
        _open(channels, f"127.0.0.1:{camp.info['grpc_port']}", pki.credentials()))
    # PreviewContent for a contact makes campaigns call RecipientService.GetContact.
    preview = await campaigns.PreviewContent(cpb.PreviewContentRequest(
        channel=c.CHANNEL_SMS, content=cpb.Content(text="Hello {{ first_name }}"), contact_id=contact_id),
        metadata=WS, timeout=10)
    assert preview.text == "Hello Robin"


async def test_client_helper_checks_the_name_and_picks_up_a_rotated_certificate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: list[grpc.aio.Channel]) -> None:
    """shared.tls in this process: HERALD_TLS_SERVER_NAME, and a server whose certificate
    files are replaced serves the new certificate to new connections without a restart."""
    first = write_pki(tmp_path / "pki")
    for k, v in first.server_env(client_auth=True).items():
        monkeypatch.setenv(k, v)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials())
    await server.start()
    try:
        # Connecting by IP address: the certificate's DNS name is what is checked.
        monkeypatch.setenv("HERALD_TLS_SERVER_NAME", SERVICE_NAME)
        channels.append(tls.channel(f"127.0.0.1:{port}"))
        assert await _health(channels[-1]) == health_pb2.HealthCheckResponse.SERVING
        monkeypatch.setenv("HERALD_TLS_SERVER_NAME", "campaigns.example.com")
        channels.append(tls.channel(f"127.0.0.1:{port}"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _health(channels[-1])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        monkeypatch.delenv("HERALD_TLS_SERVER_NAME")

        # Rotation: a new CA and certificates written over the same files.
        old_ca = first.ca.read_bytes()
        write_pki(tmp_path / "pki")
        assert first.ca.read_bytes() != old_ca
        channels.append(tls.channel(f"127.0.0.1:{port}"))  # trusts only the new CA
        assert await _health(channels[-1]) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


def test_half_a_key_pair_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    monkeypatch.setenv("HERALD_TLS_CERT_FILE", str(pki.server_cert))
    monkeypatch.delenv("HERALD_TLS_KEY_FILE", raising=False)
    with pytest.raises(tls.TlsConfigError, match="HERALD_TLS_KEY_FILE is not set"):
        tls.server_credentials()
    monkeypatch.setenv("HERALD_TLS_KEY_FILE", os.devnull)
    with pytest.raises(tls.TlsConfigError, match="HERALD_TLS_KEY_FILE=.*not a PEM file"):
        tls.server_credentials()
