"""The takeover: a surviving historian drains the session of a peer that died for good.

Why. Central historians split the stream on one shared subscription, each with a persistent
session (`mqtt_session_expiry_s`, 12 h). Mosquitto 2.0 (2.0.11 here) gives a shared group's
OFFLINE members their turn: while a historian is away, its share of the stream is queued in
its session. Restarted (the supervisor's restart policy), it drains its queue and loses
nothing; never restarted, its share waits on the broker until the session expires, and is
not in InfluxDB: with two historians, half of everything after its death.

How. Each historian watches the retained status of the peers it is given
(`takeover_peers`, `<client id>@<site id>`: `pcmm/v1/<site id>/status/historian`, where a
peer says `online` and its Last Will says `offline`). A peer still `offline`
`takeover_grace_s` after it said so (time for its supervisor to restart it) is taken over:
a session with the PEER's client id and `clean_start=False`, so the broker hands over the
peer's queue (`MqttIngest` with `takeover=peer`: the historian's own path, spool then
InfluxDB; points are idempotent by series and timestamp). That session unsubscribes from the
group's filters (nothing new is routed to it), subscribes to this historian's sync topic and
publishes a marker there: Mosquitto delivers a session's messages in the order it routed
them, so when the marker comes back everything queued before it has arrived. The session is
then ended with an MQTT 5 DISCONNECT with session expiry 0, and the broker stops queueing for
the peer; the group is the survivors. What the peer had spooled (acknowledged) but not yet
written when it died is in its spool file, which no takeover reaches: a historian started on
that file writes it (README, "A historian that never comes back").

If the peer comes back mid-takeover, the broker ends the takeover's connection (the same
client id: the session is taken over) and the takeover gives up at once, without
reconnecting (`MqttSession.run(once=True)`): the peer has its session, with what the takeover
had not acknowledged, and subscribes again as it always does. Any other end of an unfinished
takeover (the broker restarted, refused) is tried again after another grace period if the
peer is still offline. Two historians that take over one peer at once end each other's
connection the same way; the later one drains, the other tries again after the grace period
and finds an empty session (or none) to end. What either acknowledged is in its spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core import topics

SERVICE = "historian"
POLL_S = 0.5  # how often the takeover thread looks for a peer that is due
_log = logging.getLogger("bridge.historian.takeover")


@dataclass(frozen=True, slots=True)
class Peer:
    """Another historian of the group: its MQTT client id and the site level of its status."""

    client_id: str
    site_id: str

    @property
    def status_topic(self) -> str:
        return topics.SiteTopics(self.site_id).status(SERVICE)

    def __str__(self) -> str:
        return f"{self.client_id}@{self.site_id}"


def parse_peers(text: str) -> tuple[Peer, ...]:
    """`"<client id>@<site id>, ..."` -> the peers; ValueError names what is wrong."""
    peers = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        client_id, at, site_id = entry.rpartition("@")
        if not at or not client_id.strip() or not site_id.strip():
            raise ValueError(f"takeover peer {entry!r} is not <client id>@<site id>")
        peer = Peer(client_id.strip(), site_id.strip())
        _ = peer.status_topic  # ValueError for a site id that cannot be a topic level
        peers.append(peer)
    if len({p.client_id for p in peers}) != len(peers):
        raise ValueError("a takeover peer is listed twice")
    return tuple(peers)


@dataclass(slots=True)
class _State:
    offline_since: float | None = None  # monotonic time the peer was first seen offline
    done: bool = False  # its session was ended since; nothing to do until it is back


class PeerWatch:
    """What the peers' status says, and which one is due; shared by two threads (a lock)."""

    def __init__(self, peers: Iterable[Peer], grace_s: float) -> None:
        self._lock = threading.Lock()
        self._grace_s = grace_s
        self._by_topic = {p.status_topic: p for p in peers}
        self._state = {p: _State() for p in self._by_topic.values()}

    @property
    def status_topics(self) -> list[str]:
        return list(self._by_topic)

    def watches(self, topic: str) -> bool:
        return topic in self._by_topic

    def status(self, topic: str, payload: bytes, now: float) -> None:
        """A peer's (retained) status arrived: `online`, or `offline` (its Will, a clean stop)."""
        peer = self._by_topic.get(topic)
        if peer is None:
            return
        with self._lock:
            state = self._state[peer]
            if payload == b"online":
                if state.offline_since is not None or state.done:
                    _log.info("peer %s is online", peer)
                state.offline_since, state.done = None, False
            elif payload == b"offline" and state.offline_since is None and not state.done:
                _log.info("peer %s is offline; taking over in %g s", peer, self._grace_s)
                state.offline_since = now

    def due(self, now: float) -> Peer | None:
        """A peer offline for the grace period whose session is not yet ended, if any."""
        with self._lock:
            for peer, state in self._state.items():
                since = state.offline_since
                if not state.done and since is not None and now - since >= self._grace_s:
                    return peer
            return None

    def attempted(self, peer: Peer, *, ended: bool, now: float) -> None:
        """A takeover of `peer` is over: its session `ended`, or not (try again after the
        grace period, if the peer is still offline)."""
        with self._lock:
            state = self._state[peer]
            if state.offline_since is None:
                return  # it came back meanwhile: nothing to do
            if ended:
                state.done = True
            else:
                state.offline_since = now


def run_takeovers(
    watch: PeerWatch,
    take_over: Callable[[Peer], bool],
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Until `stop`: take over each peer that is due, one at a time (`take_over` returns
    whether the peer's session was ended)."""
    while not stop.wait(POLL_S):
        peer = watch.due(clock())
        if peer is None:
            continue
        ended = take_over(peer)
        watch.attempted(peer, ended=ended, now=clock())
