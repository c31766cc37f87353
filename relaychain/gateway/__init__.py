"""The HTTP gateway behind `relaychain serve`: requests in, answers and token streams out."""

from relaychain.gateway.app import create_app
from relaychain.gateway.host import GatewayHost, GatewayLimits
from relaychain.gateway.keys import ApiKeys

__all__ = ["ApiKeys", "GatewayHost", "GatewayLimits", "create_app"]
