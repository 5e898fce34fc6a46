"""The supervisory controller (L1/L2).

Pure control laws, estimators and detectors (`laws`, `estimators`, `detectors`, `diversion`),
combined by `Supervisor`, which sees telemetry only and answers with commands, each with its
reason. Adapters at the edge feed it: MQTT for the running stack, `plant.closed_loop` for
accelerated in-process runs.
"""

from controller.config import ControllerConfig
from controller.supervisor import Action, Alarm, Supervisor

__all__ = ["Action", "Alarm", "ControllerConfig", "Supervisor"]
