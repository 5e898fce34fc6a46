"""The supervisory controller (L1/L2).

Pure control laws, estimators and the diversion planner (`laws`, `estimators`, `diversion`);
the controller's units (`telemetry`, `conditions`, `blend`, `gate`, `loops`, `detectors`), each
threshold of them in `config.ControllerConfig`; all combined by `Supervisor`, which sees
telemetry only and answers with commands, each with its reason. Adapters at the edge feed it:
MQTT for the running stack, `apps.closed_loop` for accelerated in-process runs.
"""

from controller.config import ControllerConfig
from controller.supervisor import Action, Alarm, Supervisor

__all__ = ["Action", "Alarm", "ControllerConfig", "Supervisor"]
