"""Fixtures of the contract suite. One full stack per session, shared by every contract
module (it takes seconds to start); fixtures are prefixed `contract_` so they never clash
with the other contract modules' own fixtures or with tests/conftest.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.contract import stack


@pytest.fixture(scope="session")
def contract_stack_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.ContractStack]:
    cs = stack.start(tmp_path_factory.mktemp("contract-stack"))
    yield cs
    stack.stop(cs)


@pytest.fixture(scope="session")
async def contract_stack(contract_stack_processes: stack.ContractStack) -> AsyncIterator[stack.ContractStack]:
    """The running stack with its gRPC channels open (on the session loop)."""
    contract_stack_processes.connect()
    yield contract_stack_processes
    await contract_stack_processes.close()


@pytest.fixture(scope="session")
def contract_admin_a(contract_stack: stack.ContractStack) -> stack.Caller:
    return contract_stack.caller(stack.WS_A, "admin", pii=True)


@pytest.fixture(scope="session")
def contract_admin_b(contract_stack: stack.ContractStack) -> stack.Caller:
    return contract_stack.caller(stack.WS_B, "admin", pii=True)
