"""Let monitored items keep a reference to each published value instead of a deep copy.

asyncua deep-copies every DataValue for every monitored item it feeds, in case the writer
mutates the value afterwards. This server never does: the publisher builds a new DataValue for
every sample and client writes are carried out by the twin and published anew. At thousands of
tags a second the copies were most of the server's CPU, so `install()` replaces that one method.
asyncua is pinned below 2.2; `tests/integration/test_opcua_server.py` exercises the path.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemValues


def _keep_reference(self: MonitoredItemValues, current: ua.DataValue) -> None:
    self.old_dvalue = self.current_dvalue
    self.current_dvalue = current


def install() -> None:
    """Swap the deep copy for a reference, once per process."""
    MonitoredItemValues.set_current_datavalue = _keep_reference
