#!/usr/bin/env python3
"""Microphone → neural codec or vocoder → speaker, live, with the latency on screen.

Uses codecstream's public API only: load a model, wrap two devices, run a Pipeline.

    python demos/mic_loopback.py                          # HiFi-GAN resynthesis, default devices
    python demos/mic_loopback.py --model encodec-24khz --weights random --block-ms 40
    python demos/mic_loopback.py -l                       # list devices
"""

import argparse
import sys

import codecstream as cs
from codecstream.io.devices import list_devices, open_sink, open_source
from codecstream.runtime import Pipeline, block_samples_for


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-l", "--list-devices", action="store_true", help="show the audio devices and exit")
    parser.add_argument("--model", default="hifigan-universal")
    parser.add_argument("--weights", default=None, help="checkpoint path, hub id or 'random'")
    parser.add_argument("-i", "--input-device", default=None, help="input device (index or name)")
    parser.add_argument("-o", "--output-device", default=None, help="output device (index or name)")
    parser.add_argument("--backend", choices=["sounddevice", "pyaudio"], default="sounddevice")
    parser.add_argument("--block-ms", type=float, default=80.0)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    args = parser.parse_args()

    if args.list_devices:
        for device in list_devices():
            print(f"{device['index']:3d} {device['name']}  (in {device['max_input_channels']}, out {device['max_output_channels']})")
        return 0

    model = cs.load(args.model, args.weights)
    block = block_samples_for(model, args.block_ms)
    device_in = int(args.input_device) if str(args.input_device).isdigit() else args.input_device
    device_out = int(args.output_device) if str(args.output_device).isdigit() else args.output_device
    try:
        source = open_source(args.backend, device_in, model.sample_rate, model.channels, 512, ring_seconds=4 * block / model.sample_rate)
        sink = open_sink(args.backend, device_out, model.sample_rate, model.channels, 512, prefill_samples=block,
                         ring_seconds=4 * block / model.sample_rate)
    except cs.CodecStreamError as exc:
        parser.exit(1, f"{type(exc).__name__}: {exc}\n")

    pipeline = Pipeline(model, source, sink, block_ms=args.block_ms)
    print(f"{args.model}: speak into the microphone; Ctrl-C to stop", file=sys.stderr)
    pipeline.run(duration_s=args.seconds, on_status=lambda m: print("\r" + m.status_line(), end="", file=sys.stderr))
    print("\n" + pipeline.metrics().status_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
