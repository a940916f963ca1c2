"""Prometheus metrics through ``prometheus_client``: latency histograms fed where things happen,
and the gateway's counters and gauges read from its components at scrape time.

The histograms are module-level, as ``prometheus_client`` intends, so any component can
observe into them without being handed a registry. They live in no registry of their own:
each scrape builds one from them plus a collector over the gateway being scraped, so a test
process with many gateways never registers a name twice.

Names kept from the hand-written exporter (dashboards and docs use them):
``centralita_ami_link_up``, ``centralita_ami_events_total``, ``centralita_ami_reconnects_total``,
``centralita_ami_parse_errors_total``, ``centralita_calls_open``,
``centralita_calls_ended_total{outcome}``, ``centralita_directory_records``,
``centralita_outbox_parked``, ``centralita_bus_handler_errors_total``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "AMI_ACTION_SECONDS",
    "CONTENT_TYPE",
    "LOOKUP_SECONDS",
    "POPUP_SECONDS",
    "Scrape",
    "render",
]

# the classic text format every Prometheus server parses (names here are plain ASCII, so the
# 1.0.0 format newer clients default to would carry the same bytes)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Buckets around what matters on a ringing phone: a pop-up or a caller-name lookup should
# land within a ring (~1 s); AMI actions are mostly milliseconds, an async Originate waits for
# the agent to pick up (seconds).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ACTION = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

POPUP_SECONDS = Histogram(
    "centralita_popup_latency_seconds",
    "From the call's ring event to its pop-up handed to the agents' sockets.",
    buckets=_FAST,
    registry=None,
)
LOOKUP_SECONDS = Histogram(
    "centralita_lookup_latency_seconds",
    "Caller lookup through the chain (store, directory, CRMs), by who asked.",
    ["source"],
    buckets=_FAST,
    registry=None,
)
AMI_ACTION_SECONDS = Histogram(
    "centralita_ami_action_latency_seconds",
    "From sending an AMI action to its complete answer (or the link giving up on it).",
    ["pbx", "action"],
    buckets=_ACTION,
    registry=None,
)
_HISTOGRAMS = (POPUP_SECONDS, LOOKUP_SECONDS, AMI_ACTION_SECONDS)


@dataclass(slots=True)
class Scrape:
    """What one scrape reads besides the gateway itself (the async parts, read beforehand)."""

    gateway: Any  # gateway.app.Gateway (not imported: app imports the ops routes)
    directories: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    agents_online: int | None = None  # None: no panel in this process
    agent_connections: int | None = None


class _GatewayCollector:
    """The gateway's counters and gauges, read from its components when scraped."""

    def __init__(self, scrape: Scrape) -> None:
        self.scrape = scrape

    def describe(self) -> Iterable[Metric]:
        return ()  # names are only known at collect time; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        s = self.scrape
        gw = s.gateway
        links: Mapping[str, Any] = gw.links
        up = GaugeMetricFamily(
            "centralita_ami_link_up", "1 when the AMI link is logged in.", labels=["pbx"]
        )
        events = CounterMetricFamily(
            "centralita_ami_events", "AMI events received.", labels=["pbx"]
        )
        reconnects = CounterMetricFamily(
            "centralita_ami_reconnects", "Reconnects of the AMI link.", labels=["pbx"]
        )
        parse_errors = CounterMetricFamily(
            "centralita_ami_parse_errors", "Malformed AMI input skipped.", labels=["pbx"]
        )
        for name, link in links.items():
            up.add_metric([name], int(link.health().logged_in))
            events.add_metric([name], link.events_received)
            reconnects.add_metric([name], link.reconnects)
            parse_errors.add_metric([name], link.parse_error_count)
        yield from (up, events, reconnects, parse_errors)
        cluster = getattr(gw, "cluster", None)
        if cluster is not None:  # a standby's links are down on purpose: this tells why
            owned = GaugeMetricFamily(
                "centralita_pbx_lease_owned",
                "1 when this instance holds the PBX's link lease (cluster section).",
                labels=["pbx"],
            )
            for name, lease in cluster.health().items():
                owned.add_metric([name], int(lease.this_instance_owns))
            yield owned

        open_calls = GaugeMetricFamily(
            "centralita_calls_open", "Calls in progress, by PBX.", labels=["pbx"]
        )
        for name, tracker in gw.trackers.items():
            open_calls.add_metric([name], tracker.open_calls)
        yield open_calls
        ended = CounterMetricFamily(
            "centralita_calls_ended", "Calls that ended, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(gw.calls_by_outcome.items()):
            ended.add_metric([outcome], count)
        yield ended

        if s.agents_online is not None:
            yield GaugeMetricFamily(
                "centralita_agents_connected",
                "Panel users with at least one tab connected.",
                value=s.agents_online,
            )
        if s.agent_connections is not None:
            yield GaugeMetricFamily(
                "centralita_agent_connections",
                "Open panel websockets (an agent may have several tabs).",
                value=s.agent_connections,
            )
        records = GaugeMetricFamily(
            "centralita_directory_records",
            "Caller directory records pulled from each CRM module.",
            labels=["connector", "module"],
        )
        for d in s.directories:
            records.add_metric([str(d["connector"]), str(d["module"])], d["records"])
        yield records
        parked = GaugeMetricFamily(
            "centralita_outbox_parked",
            "Call write-backs a CRM refused, parked for an operator.",
            labels=["connector"],
        )
        for o in s.outbox:
            parked.add_metric([str(o["connector"])], o["parked"])
        yield parked
        yield CounterMetricFamily(
            "centralita_bus_handler_errors",
            "Exceptions raised by bus subscribers (each logged).",
            value=gw.bus.errors,
        )


def render(scrape: Scrape) -> bytes:
    """The Prometheus text exposition of the histograms and of ``scrape``'s gateway."""
    registry = CollectorRegistry(auto_describe=False)
    for histogram in _HISTOGRAMS:
        registry.register(histogram)
    registry.register(_GatewayCollector(scrape))
    return generate_latest(registry)
