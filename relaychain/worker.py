"""`relaychain worker AGENT`: one agent as a process, for Kubernetes.

SIGTERM (or SIGINT) stops fetching, lets in-flight events finish within the
drain timeout, commits, and exits 0. `/livez` and `/readyz` serve the probes:
the health server starts first, so liveness answers while models and indexes
load (each agent's `warm_up`, awaited before it joins its group); readiness
turns true only once every agent is warmed up and consuming and the broker
answered recently; liveness fails when the event loop is blocked too long or
a member stopped on a message that failed every delivery.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from relaychain.app import (
    Components,
    host_agents,
    host_custom_agent,
    make_runtime,
    topic_specs,
)
from relaychain.bus.health import HealthServer
from relaychain.buses import make_bus
from relaychain.observability import setup_telemetry
from relaychain.settings import Settings

log = logging.getLogger("relaychain.worker")


async def run_worker(
    settings: Settings, agents: list[str], *, inboxes: list[str] | None = None, group: str | None = None
) -> None:
    """Host built-in agents by name, or one `module:Class` agent on `inboxes`."""
    service = settings.observability.service_name
    label = "+".join(a.rpartition(":")[2].lower() for a in agents)
    observability = settings.observability.model_copy(update={"service_name": f"{service}-{label}"})
    telemetry = setup_telemetry(observability, jsonl_default=settings.data_dir / "traces.jsonl")
    kafka_options = {"connection_grace_s": settings.runtime.broker_grace_s, **settings.kafka}
    bus = make_bus(settings.bus, kafka_options=kafka_options)
    components = Components(settings, telemetry=telemetry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await bus.start()
    runtime = make_runtime(bus, settings, telemetry)
    hosted = asyncio.Event()
    health = HealthServer(
        ready=lambda: hosted.is_set() and runtime.ready,
        live=lambda: runtime.live,
        host=settings.runtime.health_host,
        port=_health_port(settings),
        loop_lag_threshold_s=settings.runtime.loop_lag_threshold_s,
    )
    try:
        if settings.runtime.create_topics:
            await bus.create_topics(topic_specs())
        await health.start()
        if len(agents) == 1 and ":" in agents[0]:
            await host_custom_agent(runtime, settings, agents[0], inboxes or [], group)
        else:
            await host_agents(runtime, components, agents)
        hosted.set()
        log.info("worker %s running (pid %d, health on :%d)", ",".join(agents), os.getpid(), health.port)
        await stop.wait()
        log.info("draining in-flight events (up to %.0fs)", settings.runtime.drain_timeout_s)
    finally:
        await runtime.stop(settings.runtime.drain_timeout_s)
        await health.stop()
        await bus.stop()
        await components.close()
        telemetry.shutdown()
    log.info("worker stopped cleanly")


def _health_port(settings: Settings) -> int:
    return int(os.environ.get("RELAYCHAIN_HEALTH_PORT", settings.runtime.health_port))
