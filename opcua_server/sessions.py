"""Sessions that know who is calling.

asyncua hands method callbacks only the parent node and the arguments, and checks writes
against a node's static UserAccessLevel, not against the session's user. The plant needs the
user on both: to refuse a viewer and to write the name into the audit log. So the server makes
its sessions from `PlantSession`, which

- routes Value writes to plant tag nodes to the plant's write handler, with the session's user,
  and leaves every other write to asyncua;
- sets `current_user` around method calls, so that `async def` handlers (which run on the event
  loop, in the caller's context) can read it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession

from opcua_server.security import ANONYMOUS, PlantUser

#: The user of the method call being served (anonymous outside one).
current_user: ContextVar[PlantUser] = ContextVar("opcua_user", default=ANONYMOUS)

#: Handles a Value write to a plant node; returns None when the node is not a plant tag.
WriteHandler = Callable[[ua.NodeId, ua.DataValue, PlantUser], Awaitable[ua.StatusCode | None]]


def plant_user(user: Any) -> PlantUser:
    """The session's user as a PlantUser (asyncua's internal admin session is not one)."""
    if isinstance(user, PlantUser):
        return user
    return ANONYMOUS


class PlantSession(InternalSession):  # type: ignore[misc]
    """An asyncua session whose writes and calls carry the user (see the module docstring)."""

    write_handler: WriteHandler | None = None

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        handler = self.write_handler
        if handler is None:
            return await super().write(params)  # type: ignore[no-any-return]
        user = plant_user(self.user)
        results: list[ua.StatusCode | None] = []
        others: list[int] = []
        for i, item in enumerate(params.NodesToWrite):
            result = None
            if item.AttributeId == ua.AttributeIds.Value:
                result = await handler(item.NodeId, item.Value, user)
            if result is None:
                others.append(i)
            results.append(result)
        if others:
            rest = ua.WriteParameters(NodesToWrite=[params.NodesToWrite[i] for i in others])
            for i, status in zip(others, await super().write(rest), strict=True):
                results[i] = status
        return [status or ua.StatusCode(ua.StatusCodes.BadInternalError) for status in results]

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        token = current_user.set(plant_user(self.user))
        try:
            return await super().call(params)  # type: ignore[no-any-return]
        finally:
            current_user.reset(token)


class PlantInternalServer(InternalServer):  # type: ignore[misc]
    """asyncua's internal server, making `PlantSession`s for network clients."""

    write_handler: WriteHandler | None = None

    def create_session(
        self,
        name: str,
        user: User = User(role=UserRole.Anonymous),  # noqa: B008
        external: bool = False,
    ) -> InternalSession:
        session = PlantSession(
            self, self.aspace, self.subscription_service, name, user=user, external=external
        )
        session.write_handler = self.write_handler
        return session
