"""``codecstream tts-play``: TTS playback from a token stream, with time to first audio.

A stand-in for a TTS language model: speech (espeak-ng or the Piper voice) is encoded by the
codec, turned into the LM's token layout (Orpheus: SNAC 24 kHz; Bark: EnCodec 24 kHz), and the
tokens are replayed at a set rate with jitter. They are decoded as they arrive, locally or by a
``codecstream serve`` (``--server``), and played on a device or written to a file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..io.speech import speak
from ..tokens import BarkDecoder, OrpheusDecoder, ReplayedTokens, TokenPlayer, bark_token_ids, orpheus_token_ids
from ..tokens.base import TokenAdapter, TokenDecoder

if TYPE_CHECKING:
    from ..io.base import AudioSink
    from ..plugin import Codec

__all__ = ["TTSPlayConfig", "run_tts_play", "LAYOUTS", "realtime_token_rate"]

LAYOUTS = {"orpheus": "snac-24khz", "bark": "encodec-24khz", "bark-coarse": "encodec-24khz"}
DEFAULT_TEXT = "Good morning. Your order has shipped, and it should arrive on Thursday before noon."


@dataclass
class TTSPlayConfig:
    layout: str = "orpheus"
    model: str | None = None  # default: the layout's codec (bark also decodes with vocos-encodec-24khz)
    weights: str | None = None
    text: str = DEFAULT_TEXT
    voice: str = "espeak"
    speed: float = 1.2  # token rate as a multiple of real time
    jitter_ms: float = 20.0
    burst: int = 1
    output: Path | None = None
    output_device: str | int | None = None
    backend: str = "sounddevice"
    prefill_ms: float = 200.0
    server: str | None = None
    decode_every: str = "token"
    seed: int = 0
    metrics_json: Path | None = None


def realtime_token_rate(layout: str, model: "Codec") -> float:
    """Tokens per second that make audio exactly as fast as it plays."""
    if layout == "orpheus":
        return 7 * model.sample_rate / (4 * model.hop_length)
    per_frame = 8 if layout == "bark" else 2
    return per_frame * model.frame_rate


def make_tokens(config: TTSPlayConfig, model: "Codec") -> list[int]:
    audio, _ = speak(config.text, voice=config.voice, sample_rate=model.sample_rate)
    with torch.inference_mode():
        if config.layout == "orpheus":
            return orpheus_token_ids(model.encode(audio))
        codes = model.encode(audio, bandwidth=6.0 if config.layout == "bark" else 1.5)
    return bark_token_ids(codes, "fine" if config.layout == "bark" else "coarse")


def make_decoder(config: TTSPlayConfig, model: "Codec") -> TokenDecoder:
    adapter: TokenAdapter
    if config.layout == "orpheus":
        adapter = OrpheusDecoder(model, decode_every=config.decode_every)
    else:
        adapter = BarkDecoder(model, layout="fine" if config.layout == "bark" else "coarse")
    if config.server is None:
        return adapter
    from ..tokens.remote import RemoteTokenDecoder

    return RemoteTokenDecoder(config.server, adapter)


def run_tts_play(config: TTSPlayConfig, *, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    from ..io.devices import has_output_device, open_sink
    from ..io.files import NullSink, WavFileSink
    from ..registry import load

    say = say or (lambda text: print(text, file=sys.stderr))
    if config.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
    model_name = config.model or LAYOUTS[config.layout]
    encoder_model = load(LAYOUTS[config.layout], config.weights)  # the LM's codec: makes the tokens
    model = encoder_model if model_name == LAYOUTS[config.layout] else load(model_name, config.weights)
    tokens = make_tokens(config, encoder_model)
    rate = config.speed * realtime_token_rate(config.layout, model)
    decoder = make_decoder(config, model)
    prefill = round(config.prefill_ms * model.sample_rate / 1000)
    sink: AudioSink
    if config.output is not None:
        sink = WavFileSink(config.output, model.sample_rate, model.channels)
    elif config.output_device is not None or has_output_device():
        device = config.output_device
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        # TTS audio may arrive faster than real time: the ring holds it all (no drop-oldest here).
        seconds = len(tokens) / realtime_token_rate(config.layout, model) + 5
        sink = open_sink(config.backend, device, model.sample_rate, model.channels, 512, prefill, ring_seconds=seconds)
    else:
        say("no output device and no --output: decoding without playing")
        sink = NullSink(model.sample_rate, model.channels)
    say(f"{len(tokens)} {config.layout} tokens at {rate:.0f}/s ({config.speed:.2f}x real time), decoded by {model_name}{' via ' + config.server if config.server else ''}")
    player = TokenPlayer(decoder, sink)
    sink.start()
    try:
        ReplayedTokens(tokens, rate=rate, jitter_ms=config.jitter_ms, burst=config.burst, seed=config.seed).play(player)
        sink.drain(timeout=10 + player.samples / model.sample_rate)
    finally:
        sink.stop()
    metrics = player.metrics().to_dict()
    metrics.update(layout=config.layout, model=model_name, token_rate=rate, speed=config.speed)
    if config.metrics_json is not None:
        config.metrics_json.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
