"""ImportContacts when the client cancels: gRPC ends the server's request stream the same way
whether the client sent its last row or cancelled (a broken connection too), so the server
must look at the call itself. A cancelled import keeps the rows it committed, and the
client's retry under the same request_id continues after them instead of being refused as
"another import". The handler runs on a real database; the call's context is a stand-in that
says whether the call was cancelled, which is what decides between the two endings (over the
wire, which one comes first is a race the contract test only sometimes meets)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from herald.v1 import recipients_pb2 as pb

from services.recipients.servicer import RecipientServicer
from services.recipients.store import Store
from shared import auth, db
from shared.errors import HeraldError

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/recipients/migrations")

WHO = auth.Principal(name="importer", workspace="ws-import-cancel", roles=frozenset({"service"}), pii=True)


class CallContext:
    """The two endings a server can tell apart: cancelled by the client, or not."""

    def __init__(self, cancelled: bool) -> None:
        self._cancelled = cancelled

    def cancelled(self) -> bool:
        return self._cancelled


@pytest.fixture
async def servicer(fresh_db_url: str) -> AsyncIterator[RecipientServicer]:
    await db.migrate(MIGRATIONS, fresh_db_url)
    engine = db.make_engine(fresh_db_url)
    yield RecipientServicer(Store(engine))
    await engine.dispose()


def stream(rid: str, n: int) -> list[pb.ImportContactsRequest]:
    return [pb.ImportContactsRequest(options=pb.ImportContactsOptions(request_id=rid)),
            pb.ImportContactsRequest(contacts=[pb.Contact(external_id=f"{rid}-{i}", first_name=f"R{i}")
                                               for i in range(n)])]


async def send(servicer: RecipientServicer, reqs: Sequence[pb.ImportContactsRequest],
               cancelled: bool) -> pb.ImportContactsResponse:
    async def requests() -> AsyncIterator[pb.ImportContactsRequest]:
        for r in reqs:
            yield r

    async def call() -> pb.ImportContactsResponse:  # its own task: the binding stays in it
        auth.bind(WHO)
        return await servicer.ImportContacts(requests(), CallContext(cancelled))  # type: ignore[arg-type]
    return await asyncio.create_task(call())


async def test_a_cancelled_import_is_continued_by_its_retry(servicer: RecipientServicer) -> None:
    rid = f"cancel-{uuid.uuid4().hex[:8]}"
    with pytest.raises(asyncio.CancelledError):
        await send(servicer, stream(rid, 3), cancelled=True)
    resp = await send(servicer, stream(rid, 5), cancelled=False)
    # The three committed rows are not counted twice; the two new ones are added.
    assert (resp.rows, resp.created, resp.updated, resp.unchanged) == (5, 5, 0, 0)


async def test_a_finished_import_still_refuses_more_rows(servicer: RecipientServicer) -> None:
    rid = f"done-{uuid.uuid4().hex[:8]}"
    done = await send(servicer, stream(rid, 3), cancelled=False)
    assert (done.rows, done.created) == (3, 3)
    again = await send(servicer, stream(rid, 3), cancelled=False)
    assert (again.rows, again.created) == (3, 3)  # the same answer, nothing doubled
    with pytest.raises(HeraldError) as err:
        await send(servicer, stream(rid, 5), cancelled=False)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.request_id" in str(err.value.details)
