"""`plant demo`: the whole loop natively, each service a child process (see apps/demo/cli.py).

- services.py: generated secrets and settings, the broker's and the local influxd's
  configuration, child processes (also the test kit's way to start servers), bounded shutdown;
- drain.py: at the stop, wait until the historian has stored everything sent to it;
- watch.py: the operator's view of the plant from MQTT (a `Board` fed by a `Watcher`);
- view.py: the live terminal rendering of a `Board`.
"""

from apps.demo.cli import demo

__all__ = ["demo"]
