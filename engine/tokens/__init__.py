"""Adapters between the token layouts TTS language models emit and codec streams."""

from .orpheus import OrpheusDecoder, OrpheusWindowDecoder, orpheus_token_ids

__all__ = ["OrpheusDecoder", "OrpheusWindowDecoder", "orpheus_token_ids"]
