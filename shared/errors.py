"""gRPC errors with rich details (google.rpc.Status), so clients see which field failed."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger("herald.errors")


class HeraldError(Exception):
    """Raised inside servicers; the server interceptor turns it into a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def to_status(self) -> grpc.Status:
        st = status_pb2.Status(code=getattr(code_pb2, self.code.name), message=self.message)
        for d in self.details:
            packed = any_pb2.Any()
            packed.Pack(d)
            st.details.append(packed)
        return rpc_status.to_status(st)


def invalid(violations: dict[str, str]) -> HeraldError:
    """INVALID_ARGUMENT naming every bad field."""
    br = error_details_pb2.BadRequest()
    for field, desc in violations.items():
        br.field_violations.add(field=field, description=desc)
    msg = "; ".join(f"{f}: {d}" for f, d in violations.items())
    log.info("invalid argument", extra={"fields": ",".join(violations), "detail": msg})
    return HeraldError(grpc.StatusCode.INVALID_ARGUMENT, msg, [br])


def not_found(kind: str, ident: str) -> HeraldError:
    info = error_details_pb2.ResourceInfo(resource_type=kind, resource_name=ident)
    return HeraldError(grpc.StatusCode.NOT_FOUND, f"{kind} {ident} not found", [info])


def precondition(subject: str, violation_type: str, description: str) -> HeraldError:
    pf = error_details_pb2.PreconditionFailure()
    pf.violations.add(type=violation_type, subject=subject, description=description)
    return HeraldError(grpc.StatusCode.FAILED_PRECONDITION, description, [pf])


def denied(message: str) -> HeraldError:
    return HeraldError(grpc.StatusCode.PERMISSION_DENIED, message)


def unauthenticated(message: str) -> HeraldError:
    return HeraldError(grpc.StatusCode.UNAUTHENTICATED, message)


def field_violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """Client side: the BadRequest field violations of an error (empty if none)."""
    st = rpc_status.from_call(err)
    out: dict[str, str] = {}
    if st is None:
        return out
    for d in st.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            for v in br.field_violations:
                out[v.field] = v.description
    return out
