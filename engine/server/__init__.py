"""The WebSocket service: a sans-I/O protocol, an asyncio server, a browser and a Python client."""

from .protocol import VERSION, Protocol, ProtocolError

__all__ = ["VERSION", "Protocol", "ProtocolError"]
