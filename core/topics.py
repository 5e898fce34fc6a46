"""The MQTT topic tree, ISA-95 style, derived from the tag registry's modules.

    pcmm/v1/<site>/<module>/telemetry          batched samples of one module (edge -> all)
    pcmm/v1/<site>/simulation/<module>         the twin's ground truth, simulation only
    pcmm/v1/<site>/events/<kind>               alarm, state and fault events
    pcmm/v1/<site>/events/audit/<source>       audit records of twin | edge | controller
    pcmm/v1/<site>/command/<kind>/<user>       setpoint | line | fault | quarantine | alarm (MQTT 5)
    pcmm/v1/<site>/reply/<user>                command results (MQTT 5 response topic)
    pcmm/v1/<site>/status/<service>            retained online/offline (Last Will)
    pcmm/v1/<site>/mode/<service>              retained auto | manual switch of a service
    pcmm/v1/<site>/metrics/<service>           self-metrics of a bridge service
    pcmm/v1/<site>/sync/<service>              a service's markers to itself (historian witness)
    pcmm/v1/deadletter/<service>               payloads a service could not accept

A command topic ends in the requester's MQTT user name, and the broker's ACL lets a user
publish only under its own name (`pattern write pcmm/v1/+/command/+/%u`), so the user segment
is attested by the broker: that is who the audit trail names. Results go to the MQTT 5 response
topic the request names (by convention its user's reply topic) with its correlation data.

Audit records likewise: each source has its own topic level and the ACL lets only its publisher
write it (the edge the twin's and its own, the controller its own), so the historian takes the
record's source and site from the topic, never from the payload.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "pcmm/v1"
EVENT_KINDS = ("audit", "alarm", "state", "fault")
#: Who keeps an audit trail; each publishes on its own topic level (`SiteTopics.audit`).
AUDIT_SOURCES = ("twin", "edge", "controller")
COMMAND_KINDS = ("setpoint", "line", "fault", "quarantine", "alarm")


def _segment(name: str, what: str) -> str:
    if not name or any(c in name for c in "/+#$") or name != name.strip():
        raise ValueError(f"{what} {name!r} cannot be an MQTT topic level")
    return name


@dataclass(frozen=True, slots=True)
class SiteTopics:
    """Every topic of one site."""

    site: str

    def __post_init__(self) -> None:
        _segment(self.site, "site id")

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.site}"

    def telemetry(self, module: str) -> str:
        return f"{self.base}/{_segment(module, 'module')}/telemetry"

    @property
    def all_telemetry(self) -> str:
        """Telemetry of every module of the site (never its simulation truth)."""
        return f"{self.base}/+/telemetry"

    def truth(self, module: str) -> str:
        return f"{self.base}/simulation/{_segment(module, 'module')}"

    def event(self, kind: str) -> str:
        """Alarm, state and fault events; audit records have a topic per source (`audit`)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        if kind == "audit":
            raise ValueError("audit records go on the topic of their source: audit(source)")
        return f"{self.base}/events/{kind}"

    def audit(self, source: str) -> str:
        """The audit records of one source (twin, edge, controller), attested by the ACL."""
        if source not in AUDIT_SOURCES:
            raise ValueError(f"unknown audit source {source!r}")
        return f"{self.base}/events/audit/{source}"

    @property
    def all_audit(self) -> str:
        """The audit records of every source of the site."""
        return f"{self.base}/events/audit/+"

    def command(self, kind: str, user: str) -> str:
        if kind not in COMMAND_KINDS:
            raise ValueError(f"unknown command kind {kind!r}")
        return f"{self.base}/command/{kind}/{_segment(user, 'user')}"

    @property
    def all_commands(self) -> str:
        return f"{self.base}/command/+/+"

    def reply(self, user: str) -> str:
        return f"{self.base}/reply/{_segment(user, 'user')}"

    def status(self, service: str) -> str:
        return f"{self.base}/status/{_segment(service, 'service')}"

    def mode(self, service: str) -> str:
        """Retained run-time switch of a service (the controller: auto or manual)."""
        return f"{self.base}/mode/{_segment(service, 'service')}"

    def metrics(self, service: str) -> str:
        return f"{self.base}/metrics/{_segment(service, 'service')}"

    def sync(self, service: str) -> str:
        """Markers a service sends to its own second session (bridge/historian/coverage.py)."""
        return f"{self.base}/sync/{_segment(service, 'service')}"


def deadletter(service: str) -> str:
    return f"{ROOT}/deadletter/{_segment(service, 'service')}"


# Wildcard subscriptions across sites.
ALL_TELEMETRY = f"{ROOT}/+/+/telemetry"
ALL_TRUTH = f"{ROOT}/+/simulation/+"
ALL_EVENTS = f"{ROOT}/+/events/#"  # audit records are one level deeper
ALL_METRICS = f"{ROOT}/+/metrics/+"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the group's members split the messages between them."""
    return f"$share/{_segment(group, 'share group')}/{topic_filter}"
