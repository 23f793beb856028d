"""Adapters between the token layouts TTS language models emit and codec streams, and TTS
playback with time-to-first-audio measured."""

from .bark import BarkDecoder, bark_token_ids
from .group import GroupedVoice, TokenGroup
from .base import TokenAdapter, TokenDecoder, TokenIds
from .neutts import NeuTTSDecoder, parse_neutts
from .orpheus import OrpheusDecoder, orpheus_token_ids
from .player import PlaybackMetrics, ReplayedTokens, TokenPlayer

__all__ = [
    "BarkDecoder",
    "GroupedVoice",
    "NeuTTSDecoder",
    "OrpheusDecoder",
    "PlaybackMetrics",
    "ReplayedTokens",
    "TokenAdapter",
    "TokenDecoder",
    "TokenIds",
    "TokenGroup",
    "TokenPlayer",
    "bark_token_ids",
    "orpheus_token_ids",
    "parse_neutts",
]
