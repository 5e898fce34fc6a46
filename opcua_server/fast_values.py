"""Two asyncua server hot paths made cheaper, at the same behaviour.

1. Monitored items keep a reference to each published value instead of a deep copy. asyncua
   deep-copies every DataValue for every monitored item it feeds, in case the writer mutates
   the value afterwards. This server never does: the publisher builds a new DataValue for every
   sample and client writes are carried out by the twin and published anew. At thousands of
   tags a second the copies were most of the server's CPU.
2. A data change notification is built only when it is sent, and with its value. asyncua's
   `MonitoredItemService.datachange_callback` starts every call with
   `ua.MonitoredItemNotification()`, whose default DataValue builds a Variant that guesses its
   type, and then overwrites that value: with 20,000 tags a second under one subscription this
   throw-away was 30 % of the server's samples (py-spy, bench.opcua --tags 20000, issue 17).

asyncua is pinned below 2.2; `tests/integration/test_opcua_server.py` exercises both paths.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemService, MonitoredItemValues

_DISABLED = ua.MonitoringMode.Disabled
_STATUS_VALUE = ua.DataChangeTrigger.StatusValue


def _keep_reference(self: MonitoredItemValues, current: ua.DataValue) -> None:
    self.old_dvalue = self.current_dvalue
    self.current_dvalue = current


async def _datachange_callback(
    self: MonitoredItemService, handle: int, value: ua.DataValue, error: ua.StatusCode | None = None
) -> None:
    # asyncua 2.1's MonitoredItemService.datachange_callback, less the throw-away notification.
    if error:
        self.logger.info(
            "subscription %s: datachange callback called with handle '%s' and error '%s'",
            self,
            handle,
            error,
        )
        await self.trigger_statuschange(error)
        return
    mid = self._monitored_datachange[handle]
    mdata = self._monitored_items[mid]
    if mdata.mode == _DISABLED:
        return
    mdata.mvalue.set_current_datavalue(value)
    if mdata.filter:
        passed = self._is_data_changed(
            mdata.mvalue, mdata.filter.Trigger
        ) and self._is_deadband_exceeded(mdata.mvalue, mdata.filter)
    else:
        passed = self._is_data_changed(mdata.mvalue, _STATUS_VALUE)
    if passed:
        event = ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=value)
        await self.isub.enqueue_datachange_event(mid, event, mdata.queue_size)


def install() -> None:
    """Swap both paths in, once per process."""
    MonitoredItemValues.set_current_datavalue = _keep_reference
    MonitoredItemService.datachange_callback = _datachange_callback
