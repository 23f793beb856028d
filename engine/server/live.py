"""``codecstream client``: a file or the microphone to the server, the answer to a file or the
speakers."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np

from .client import ServerError, expect_ready, stream_audio
from .protocol import Audio, End, ErrorMessage, Hello, Protocol

if TYPE_CHECKING:
    from ..io.base import AudioSink

__all__ = ["run_client"]


def run_client(args: argparse.Namespace) -> str:
    if args.input is not None:
        return _file_client(args)
    return asyncio.run(_microphone_client(args))


def _file_client(args: argparse.Namespace) -> str:
    import soundfile

    from ..io.wav import write_audio

    audio, rate = soundfile.read(str(args.input), dtype="float32", always_2d=True)
    result = asyncio.run(
        stream_audio(args.url, audio, rate, model=args.model, direction=args.direction, chunk_ms=args.chunk_ms, realtime=args.realtime, token=args.token)
    )
    if args.direction == "audio->codes":
        frames = sum(level.shape[-1] for message in result.codes for level in message[-1:])
        return f"{args.input}: {len(result.codes)} code messages, {frames} frames from {result.ready.model}"
    import torch

    out = result.audio
    if args.output is not None:
        write_audio(args.output, torch.from_numpy(np.ascontiguousarray(out.T)), rate)
    return f"{args.input} -> {args.output or 'nowhere'}: {len(out) / rate:.2f} s through {result.ready.model} (model latency {result.ready.latency_ms:.1f} ms)"


async def _microphone_client(args: argparse.Namespace) -> str:
    """Microphone in, speakers (or a file) out, until Ctrl-C or ``--duration``."""
    from websockets.asyncio.client import connect

    from ..io.devices import SoundDeviceSink, SoundDeviceSource
    from ..io.files import WavFileSink

    rate = 48000
    source = SoundDeviceSource(None, rate, 1, block_samples=512, ring_seconds=1.0)
    protocol = Protocol(max_message_bytes=1 << 24)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    chunk = round(args.chunk_ms * rate / 1000)
    async with connect(args.url, additional_headers=headers, max_size=1 << 24) as websocket:
        await websocket.send(protocol.hello(Hello(model=args.model, direction="audio->audio", sample_rate=rate)))
        ready = expect_ready(protocol.receive(await websocket.recv()))
        sink: AudioSink = WavFileSink(args.output, rate) if args.output else SoundDeviceSink(None, rate, 1, block_samples=512, prefill_samples=chunk * 3, ring_seconds=1.0, late_audio="drop")
        sink.start()
        source.start()
        started = time.monotonic()

        async def send() -> None:
            try:
                while args.duration is None or time.monotonic() - started < args.duration:
                    block = source.ring.read(chunk)
                    if block is None:
                        await asyncio.sleep(0.005)
                        continue
                    await websocket.send(protocol.audio(block))
            finally:
                await websocket.send(protocol.end())

        sender = asyncio.create_task(send())
        received = 0
        try:
            async for message in websocket:
                event = protocol.receive(message)
                if isinstance(event, Audio):
                    sink.write(event.samples)
                    received += len(event.samples)
                elif isinstance(event, ErrorMessage):
                    raise ServerError(event.code, event.message)
                elif isinstance(event, End):
                    break
        finally:
            sender.cancel()
            source.stop()
            sink.stop()
    return f"{received / rate:.1f} s through {ready.model} (model latency {ready.latency_ms:.1f} ms)"
