"""bridge.historian.takeover: which peers, when one is due, and the one-connection session."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from pydantic import ValidationError

from bridge.historian.settings import HistorianSettings
from bridge.historian.takeover import Peer, PeerWatch, parse_peers, run_takeovers
from bridge.mqtt_session import MqttConfig, MqttSession
from testkit.servers import free_port

A = Peer("historian-central-2", "central-2")
B = Peer("historian-central-3", "central-3")
GRACE_S = 30.0


def watch() -> PeerWatch:
    return PeerWatch([A, B], GRACE_S)


def test_peers_are_client_id_at_site_id_and_their_status_topic_follows() -> None:
    assert parse_peers(" historian-central-2@central-2 , historian-central-3@central-3,") == (A, B)
    assert parse_peers("") == ()
    assert A.status_topic == "pcmm/v1/central-2/status/historian"
    assert parse_peers("id@with@at@central-2") == (Peer("id@with@at", "central-2"),)


@pytest.mark.parametrize(
    "text", ["historian-2", "@central-2", "historian-2@", "h@bad/site", "h@a, h@b"]
)
def test_a_peer_list_that_cannot_be_read_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_peers(text)
    with pytest.raises(ValidationError):
        HistorianSettings(takeover_peers=text)


def test_the_takeover_needs_a_share_group_and_another_historian() -> None:
    with pytest.raises(ValidationError, match="share group"):
        HistorianSettings(takeover_peers="h2@central-2", mqtt_share_group="")
    with pytest.raises(ValidationError, match="own client id"):
        HistorianSettings(takeover_peers="historian-1@central-1", mqtt_client_id="historian-1")
    settings = HistorianSettings(takeover_peers="historian-central-2@central-2")
    assert settings.peers == (A,) and settings.takeover_grace_s == 30.0
    assert HistorianSettings().peers == ()  # off by default


def test_a_peer_is_due_once_offline_for_the_grace_period() -> None:
    w = watch()
    w.status(A.status_topic, b"online", 0.0)
    assert w.due(1000.0) is None
    w.status(A.status_topic, b"offline", 10.0)  # its Will
    w.status(A.status_topic, b"offline", 20.0)  # said again (retained, on a resubscription)
    assert w.due(10.0 + GRACE_S - 0.1) is None
    assert w.due(10.0 + GRACE_S) == A
    w.status("pcmm/v1/central-9/status/historian", b"offline", 0.0)  # not a peer: ignored
    assert w.due(1e6) == A


def test_a_peer_back_within_the_grace_period_is_left_alone() -> None:
    w = watch()
    w.status(A.status_topic, b"offline", 0.0)
    w.status(A.status_topic, b"online", 5.0)  # its supervisor restarted it
    assert w.due(1e6) is None


def test_an_ended_session_is_not_taken_again_until_the_peer_is_back_and_dies_again() -> None:
    w = watch()
    w.status(A.status_topic, b"offline", 0.0)
    w.attempted(A, ended=True, now=GRACE_S)
    assert w.due(1e6) is None  # its status stays `offline` (retained): nothing more to do
    w.status(A.status_topic, b"online", 100.0)
    w.status(A.status_topic, b"offline", 200.0)
    assert w.due(200.0 + GRACE_S) == A


def test_an_unfinished_takeover_is_tried_again_after_another_grace_period() -> None:
    w = watch()
    w.status(A.status_topic, b"offline", 0.0)
    w.attempted(A, ended=False, now=40.0)  # e.g. the broker restarted meanwhile
    assert w.due(40.0 + GRACE_S - 0.1) is None
    assert w.due(40.0 + GRACE_S) == A


def test_a_peer_back_during_the_takeover_is_not_taken_again() -> None:
    w = watch()
    w.status(A.status_topic, b"offline", 0.0)
    w.status(A.status_topic, b"online", 31.0)  # it came back and kicked the takeover out
    w.attempted(A, ended=False, now=32.0)
    assert w.due(1e6) is None
    w.attempted(A, ended=True, now=33.0)  # or ended it just before: not marked done
    w.status(A.status_topic, b"offline", 50.0)
    assert w.due(50.0 + GRACE_S) == A


def test_the_takeover_thread_takes_over_each_due_peer_once() -> None:
    w = watch()
    for peer in (A, B):
        w.status(peer.status_topic, b"offline", 0.0)
    stop = threading.Event()
    taken: list[Peer] = []

    def take_over(peer: Peer) -> bool:
        taken.append(peer)
        if len(taken) == 2:
            stop.set()
        return True

    run_takeovers(w, take_over, stop, clock=lambda: GRACE_S)
    assert sorted(taken, key=str) == [A, B]


def test_a_one_connection_session_returns_when_the_broker_cannot_be_reached() -> None:
    login = MqttConfig("127.0.0.1", free_port(), "historian", retry_initial_s=5, retry_max_s=5)
    session = MqttSession(login, log=logging.getLogger("test"))
    began = time.monotonic()
    session.run(threading.Event(), once=True)  # no backoff, no second attempt
    assert time.monotonic() - began < 2
