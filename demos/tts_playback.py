#!/usr/bin/env python3
"""Play TTS tokens as a language model generates them, and see the time to first audio.

A stand-in LM replays Orpheus tokens (SNAC 24 kHz codes of espeak-ng speech) at a token rate
you choose; each token is decoded the moment it arrives and played (or written to a file).
Uses the public API: cs.load, codecstream.tokens (OrpheusDecoder, TokenPlayer, ReplayedTokens).

    python demos/tts_playback.py --weights random --output tts.wav
    python demos/tts_playback.py --speed 1.1 --jitter-ms 30          # default output device
"""

import argparse
import sys

import codecstream as cs
from codecstream.io.devices import has_output_device, open_sink
from codecstream.io.files import NullSink, WavFileSink
from codecstream.io.speech import speak
from codecstream.tokens import OrpheusDecoder, ReplayedTokens, TokenPlayer, orpheus_token_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="SNAC 24 kHz weights (path, hub id or 'random')")
    parser.add_argument("--text", default="The weather today is sunny, with a light breeze from the west.")
    parser.add_argument("--speed", type=float, default=1.2, help="token rate as a multiple of real time")
    parser.add_argument("--jitter-ms", type=float, default=20.0)
    parser.add_argument("--output", default=None, help="WAV file instead of the speakers")
    args = parser.parse_args()

    snac = cs.load("snac-24khz", args.weights)
    speech, _ = speak(args.text, sample_rate=snac.sample_rate)
    tokens = orpheus_token_ids(snac.encode(speech))  # what an Orpheus LM would emit
    if args.output:
        sink = WavFileSink(args.output, snac.sample_rate)
    elif has_output_device():
        sink = open_sink("sounddevice", None, snac.sample_rate, 1, 512, prefill_samples=snac.sample_rate // 5, ring_seconds=60)
    else:
        print("no output device: decoding only (pass --output to keep the audio)", file=sys.stderr)
        sink = NullSink(snac.sample_rate, 1)

    player = TokenPlayer(OrpheusDecoder(snac), sink)
    with sink:
        ReplayedTokens(tokens, rate=args.speed * 82.03, jitter_ms=args.jitter_ms).play(player)
        sink.drain()
    print(player.metrics().summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
