"""How many real-time voice sessions does `codecstream serve` hold on this machine?

Starts `codecstream serve` (EnCodec 24 kHz, random weights unless --weights is given), then for
each N opens N clients that stream speech-like audio in real time (20 ms PCM16 chunks) through
the codec, encode and decode, and prints each run's end lag: when the last output arrived after
the last chunk was sent. A count is held when that lag stays bounded as --seconds grows.
(`codecstream loadtest`, planned, will do this against any running server.)

    python demos/server_capacity.py 1 2 3 4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import numpy as np

from codecstream.server.client import stream_audio
from codecstream.signals import speech_like


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", type=int, nargs="+", help="session counts to try")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    parser.add_argument("--model", default="encodec-24khz")
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", args.model,
         "--weights", f"{args.model}={args.weights}", "--max-sessions", "256"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(server.stdout.readline().split(":")[2].split("/")[0])  # "serving on http://127.0.0.1:PORT/ ..."
        url = f"ws://127.0.0.1:{port}/ws"
        for count in args.counts:
            signals = [speech_like(args.seconds, 24000, 1, seed=i)[0, 0].numpy() for i in range(count)]

            async def sessions(signals=signals):
                return await asyncio.gather(*[
                    stream_audio(url, signal, 24000, model=args.model, chunk_ms=20, realtime=True) for signal in signals
                ])

            started = time.monotonic()
            results = asyncio.run(sessions())
            wall = time.monotonic() - started
            lags_ms = [1000 * (result.received_at[-1][0] - result.sent_at[-1]) for result in results]
            print(f"{count} sessions: {wall:.1f} s for {args.seconds:g} s of audio; end lag p50 {np.median(lags_ms):.0f} ms, max {max(lags_ms):.0f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
