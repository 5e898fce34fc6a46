"""The OPC UA server: the twin's tags, commands, alarms and history over OPC UA.

`PlantServer` runs one pod; `OpcUaSettings` configures it; `plant opcua serve` starts it.
"""

from opcua_server.server import PlantServer
from opcua_server.settings import OpcUaSettings

__all__ = ["OpcUaSettings", "PlantServer"]
