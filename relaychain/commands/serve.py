"""`relaychain serve`: the HTTP gateway (and, on memory://, the agents with it)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import click

from relaychain.settings import ConfigError, load_settings

__all__ = ["serve"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--bus", help="memory:// (agents in this process) or kafka://host:port (RELAYCHAIN_BUS).")
@click.option("--host", "bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--allow-unauthenticated-remote",
    is_flag=True,
    help="Listen on a non-loopback address although no API keys are configured.",
)
def serve(bus: str | None, bind: str, port: int, allow_unauthenticated_remote: bool) -> None:
    """Serve the HTTP API (/v1/requests, /v1/chat/completions), the chat page at /, /livez and /readyz."""
    from relaychain.gateway import ApiKeys, GatewayHost
    from relaychain.gateway.keys import KeyError_
    from relaychain.gateway.serve import serve as run

    try:
        settings = load_settings(**({"bus": bus} if bus else {}))
        keys = ApiKeys.from_environment()
    except (ConfigError, KeyError_, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if not keys.enabled and not _is_loopback(bind) and not allow_unauthenticated_remote:
        raise click.ClickException(
            f"no API keys are configured, so the gateway listens on 127.0.0.1 only; set RELAYCHAIN_GATEWAY_KEYS "
            f"(or RELAYCHAIN_GATEWAY_KEYS_DIR) or pass --allow-unauthenticated-remote to listen on {bind}"
        )
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    click.echo(f"relaychain gateway on http://{bind}:{port}/ (bus {settings.bus})", err=True)
    asyncio.run(run(GatewayHost(settings, keys=keys), bind=bind, port=port))
