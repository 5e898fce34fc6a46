"""The witness's gate: when the historian's second session must keep what it receives.

Why a witness. Several historians split the stream on one shared subscription
(`$share/<group>/...`), and Mosquitto 2.0 (2.0.11 in Debian 12) does not save shared
subscriptions with a persistent session: after the broker restarts, a message routed before
the historian has reconnected and subscribed again matches no subscription and is dropped,
acknowledged to its publisher (a site's bridge, an edge). Plain subscriptions are saved and
restored with the session. So each historian keeps a second session, the witness
(`<client id>-witness`), with the same filters as plain subscriptions: after a restart the
broker queues for it everything routed before the shared subscription is back.

The witness receives the whole stream all the time and drops it (acknowledged at once) while
the shared subscription is known to be in place. It keeps (spools, like the main session) what
it receives while the shared subscription may be missing: from the start, and from the loss of
either session's connection, until it reads a marker that the main session published after
its SUBACK. Mosquitto hands a session's messages over in the order it routed them, so every
message routed before the shared subscription existed reaches the witness before the marker;
what is routed after the marker goes to the group. What both sessions keep is written twice
to the same InfluxDB point (same series and timestamp): idempotent, as a redelivery is.

The witness's session expires after `mqtt_witness_session_expiry_s` (5 min) away: long enough
to outlast a broker restart, short enough that a historian away for hours is not queued for
twice on the broker and does not write its whole absence twice on return. Not covered: a
broker restarted while the historian has been away longer than that (what arrives before it
is back is lost, as without a witness); and a broker killed (SIGKILL, power) loses what
arrived since its last autosave, for every session alike (deploy/mosquitto/mosquitto.conf).
"""

from __future__ import annotations

import secrets
import threading


class Coverage:
    """Shared by the main session's thread and the witness's; every method takes the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._covering = True  # from the start: the group's subscription is not yet known
        self._main_ready = False  # the main session's shared subscription is acknowledged
        self._witness_ready = False  # the witness's plain subscription is acknowledged
        self._marker: bytes | None = None  # the marker published and not yet read back
        self.markers_seen = 0

    @property
    def covering(self) -> bool:
        """The witness keeps what it receives."""
        with self._lock:
            return self._covering

    def lost(self, *, witness: bool) -> None:
        """A session's connection is gone: keep from now until a marker after its return."""
        with self._lock:
            self._covering = True
            self._marker = None
            if witness:
                self._witness_ready = False
            else:
                self._main_ready = False

    def subscribed(self, *, witness: bool) -> None:
        """A session's subscriptions are acknowledged (after each connection)."""
        with self._lock:
            self._covering = True
            self._marker = None  # a marker read after this one was published is the proof
            if witness:
                self._witness_ready = True
            else:
                self._main_ready = True

    def marker_due(self) -> bytes | None:
        """The marker the main session should publish now, if one is due."""
        with self._lock:
            if not (self._covering and self._main_ready and self._witness_ready):
                return None
            if self._marker is not None:
                return None  # published, on its way
            self._marker = secrets.token_hex(16).encode()
            return self._marker

    def marker_failed(self) -> None:
        """The marker could not be published: another is due."""
        with self._lock:
            self._marker = None

    def seen(self, payload: bytes) -> bool:
        """The witness read a marker; True if it was ours and coverage ended."""
        with self._lock:
            if self._marker is None or payload != self._marker:
                return False
            self._covering = False
            self._marker = None
            self.markers_seen += 1
            return True
