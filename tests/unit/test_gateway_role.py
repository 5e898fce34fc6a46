"""`OnBehalfOf` is honoured only for a gateway (the edge's account); a plain operator naming
someone is refused and audited; an over-long reason or name is refused, never cut."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.crypto.permission_rules import UserRole

from core.text import MAX_FIELD_CHARS, MAX_NAME_CHARS, MAX_REASON_CHARS
from opcua_server.methods import CommandMethods, Refusal
from opcua_server.security import PlantUser, Role, hash_password, load_users
from opcua_server.sessions import current_user
from twin import Plant

GATEWAY = PlantUser(role=UserRole.User, name="edge", plant_role=Role.GATEWAY)
OPERATOR = PlantUser(role=UserRole.User, name="alice", plant_role=Role.OPERATOR)


def test_the_users_file_takes_the_gateway_role(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(
        f'[users.edge]\nrole = "gateway"\npassword_hash = "{hash_password("pw")}"\n'
        f'[users.alice]\nrole = "operator"\npassword_hash = "{hash_password("pw")}"\n'
    )
    users = load_users(path)
    assert (users["edge"].role, users["alice"].role) == (Role.GATEWAY, Role.OPERATOR)
    assert GATEWAY.may_operate and GATEWAY.may_act_for_others
    assert OPERATOR.may_operate and not OPERATOR.may_act_for_others


def call_as(user: PlantUser, methods: CommandMethods, reason: str, on_behalf_of: str) -> str:
    async def call() -> str:
        token = current_user.set(user)
        try:
            return methods._operator("write", "press.fill_depth_sp", reason, on_behalf_of, at=2)
        finally:
            current_user.reset(token)

    return asyncio.run(call())


@pytest.fixture
def methods() -> CommandMethods:
    async def nothing() -> None:
        return None

    return CommandMethods(Plant(seed=1), nothing)


def test_a_gateway_acts_on_behalf_of_its_user(methods: CommandMethods) -> None:
    assert call_as(GATEWAY, methods, "trim", "bob") == "bob via edge"
    assert call_as(GATEWAY, methods, "trim", "") == "edge"
    assert call_as(OPERATOR, methods, "trim", "") == "alice"
    assert len(methods.plant.audit) == 0  # the twin audits the command itself


def test_an_operator_naming_someone_is_refused_and_audited_under_its_own_name(
    methods: CommandMethods,
) -> None:
    with pytest.raises(Refusal) as refused:
        call_as(OPERATOR, methods, "trim", "bob")
    assert refused.value.status == ua.StatusCodes.BadUserAccessDenied
    assert refused.value.argument == 3  # OnBehalfOf
    assert "may not act on behalf of 'bob': only a gateway may" in refused.value.message
    (record,) = methods.plant.audit
    assert (record.user, record.action, record.reason, record.accepted) == (
        "alice",
        "write",
        "trim",
        False,
    )


def test_an_over_long_reason_is_refused_and_audited_bounded(methods: CommandMethods) -> None:
    assert call_as(GATEWAY, methods, "r" * MAX_REASON_CHARS, "bob") == "bob via edge"
    with pytest.raises(Refusal) as refused:
        call_as(GATEWAY, methods, "r" * (10 * 1024 * 1024), "bob")
    assert refused.value.status == ua.StatusCodes.BadInvalidArgument
    assert refused.value.argument == 2  # Reason
    assert "Reason is 10,485,760 characters long; at most 1000" in refused.value.message
    (record,) = methods.plant.audit
    assert record.user == "bob via edge" and not record.accepted
    assert len(record.reason) < MAX_FIELD_CHARS + 40 and record.reason.endswith("characters]")


def test_an_over_long_name_to_act_for_is_refused(methods: CommandMethods) -> None:
    with pytest.raises(Refusal) as refused:
        call_as(GATEWAY, methods, "trim", "b" * (MAX_NAME_CHARS + 1))
    assert refused.value.status == ua.StatusCodes.BadInvalidArgument
    assert refused.value.argument == 3
    (record,) = methods.plant.audit
    assert record.user.endswith(" via edge") and len(record.user) < MAX_NAME_CHARS + 60
