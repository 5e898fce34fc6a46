"""The edge gateway: OPC UA subscription -> durable outbox -> MQTT, and commands back.

See `service` for the architecture; `cli.edge` is the entry point (`plant bridge edge`).
"""

from bridge.edge.service import Edge
from bridge.edge.settings import EdgeSettings

__all__ = ["Edge", "EdgeSettings"]
