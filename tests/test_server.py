"""The WebSocket server on 127.0.0.1: correctness per direction, a 16-client load test, bad
input next to a healthy session, limits, auth, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import codecstream as cs
from helpers import running_server
from codecstream.server.app import ComputeWorker, Server, ServerConfig
from codecstream.server.client import ServerError, stream_audio
from codecstream.server.protocol import Hello, Protocol

pytest.importorskip("websockets")
WEIGHTS = {"vocos-mel-24khz": "random", "encodec-24khz": "random", "snac-24khz": "random"}


@pytest.fixture(scope="module")
def server():
    config = ServerConfig(
        port=0, default_model="vocos-mel-24khz", models=tuple(WEIGHTS), weights=WEIGHTS, max_sessions=24, max_message_bytes=256 * 1024,
        idle_timeout_s=5.0, send_timeout_s=2.0, token=None,
    )
    with running_server(config) as instance:  # the served models are loaded before it listens
        yield instance


def url(server):
    return f"ws://127.0.0.1:{server.port}/ws"


def speechlike(seconds, seed=0):
    from codecstream.signals import speech_like

    return speech_like(seconds, 24000, 1, seed=seed)[0, 0].numpy()


def test_audio_to_audio_and_codes_to_audio_equal_offline(server):
    audio = speechlike(1.5)
    result = asyncio.run(stream_audio(url(server), audio, 24000, model="encodec-24khz", audio_format="f32"))
    model = server.model("encodec-24khz")
    with torch.inference_mode():
        expected = model.decode(model.encode(torch.from_numpy(audio)[None, None]))[0, 0].numpy()
    assert result.audio.shape == (36000, 1)  # as long as the input, like an offline roundtrip
    assert np.abs(result.audio[:, 0] - expected[:36000]).max() <= 1e-5
    assert result.ready.latency_ms == pytest.approx(320 / 24)

    at_48k = asyncio.run(stream_audio(url(server), np.repeat(audio, 2), 48000, model="encodec-24khz", audio_format="f32"))
    assert len(at_48k.audio) == 72000  # the server converts rates both ways

    snac = server.model("snac-24khz")
    codes = [torch.randint(0, 4096, (1, n)) for n in (4, 8, 16)]

    async def send_codes():
        from websockets.asyncio.client import connect

        protocol = Protocol()
        async with connect(url(server)) as ws:
            await ws.send(protocol.hello(Hello(model="snac-24khz", direction="codes->audio", sample_rate=24000, format="f32")))
            protocol.receive(await ws.recv())
            for f in range(16):  # one latent frame at a time, as a TTS model would
                await ws.send(protocol.codes([level.numpy() for level in snac.slice_codes(codes, f, f + 1)]))
            await ws.send(protocol.end())
            pieces = []
            async for message in ws:
                event = protocol.receive(message)
                if hasattr(event, "samples"):
                    pieces.append(event.samples)
            return np.concatenate(pieces)[:, 0]

    decoded = asyncio.run(send_codes())
    with torch.inference_mode():
        expected = snac.decode(codes)[0, 0].numpy()
    assert np.abs(decoded - expected).max() <= 1e-4


@pytest.fixture(scope="module")
def served():
    """``codecstream serve`` as its own process (compute on its main thread), as deployed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", "vocos-mel-24khz", "--weights", "vocos-mel-24khz=random"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert "serving on http://127.0.0.1:" in line, process.stderr.read()
    port = int(line.split(":")[2].split("/")[0])
    yield port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_load_16_clients_20s_each(served):
    """16 clients stream 20 s each in real time (50 ms chunks) through one server process; none
    loses or reorders a message (the protocol raises on a sequence gap) and each gets exactly
    the offline features of its audio."""
    model = cs.load("vocos-mel-24khz", weights="random")
    signals = [speechlike(20, seed=i) for i in range(16)]
    target = f"ws://127.0.0.1:{served}/ws"
    before = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics").read())

    async def all_clients():
        tasks = [
            stream_audio(target, signal, 24000, direction="audio->codes", chunk_ms=50, realtime=True, audio_format="f32")
            for signal in signals
        ]
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=180)

    started = time.monotonic()
    results = asyncio.run(all_clients())
    wall = time.monotonic() - started
    for sent, result in zip(signals, results):
        features = np.concatenate([message[0] for message in result.codes], axis=1)
        with torch.inference_mode():
            expected = model.encode(torch.from_numpy(sent)[None, None])[0].numpy()
        assert features.shape == expected.shape
        assert np.abs(features - expected).max() <= 1e-4
    after = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics").read())
    compute = after["compute_seconds"] - before["compute_seconds"]
    print(
        f"\nload: 16 clients x 20 s in {wall:.1f} s; added latency per chunk p50 {after['chunk_latency_p50_ms']:.2f} ms, "
        f"p99 {after['chunk_latency_p99_ms']:.2f} ms; server RTF {compute / (16 * 20):.3f} (compute {compute:.1f} s)"
    )
    assert wall < 40  # close to real time (20 s), not a growing backlog
    assert after["sessions_total"] - before["sessions_total"] == 16


async def healthy_session(server, seconds, gaps):
    """A real-time client whose output must arrive without interruption."""
    model = server.model("vocos-mel-24khz")
    signal = speechlike(seconds, seed=99)
    result = await stream_audio(url(server), signal, 24000, direction="audio->codes", chunk_ms=20, realtime=True, audio_format="f32")
    features = np.concatenate([message[0] for message in result.codes], axis=1)
    with torch.inference_mode():
        expected = model.encode(torch.from_numpy(signal)[None, None])[0].numpy()
    gaps.append(float(np.abs(features - expected).max()))
    return result


async def raw_session(server, first, *more, read=True, headers=None):
    """Send raw messages; return (error messages received, close code)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    errors = []
    async with connect(url(server), additional_headers=headers, max_size=1 << 24) as ws:
        try:
            for message in (first, *more):
                await ws.send(message)
            while read:
                message = await asyncio.wait_for(ws.recv(), 10)
                if message[:1] == b"\x05":
                    errors.append(json.loads(message[1:])["code"])
        except ConnectionClosed:
            pass
        return errors, ws.close_code


def hello(**changes):
    return Protocol().hello(Hello(**{**dict(model="vocos-mel-24khz", direction="audio->codes", sample_rate=24000, format="f32"), **changes}))


def test_bad_input_gets_an_error_and_other_sessions_keep_streaming(server):
    async def scenario():
        gaps: list[float] = []
        healthy = asyncio.create_task(healthy_session(server, 8, gaps))
        await asyncio.sleep(0.5)
        outcomes = {}
        outcomes["random bytes"] = await raw_session(server, os.urandom(64))
        outcomes["oversized"] = await raw_session(server, hello(), b"\x03" + b"\x00" * (300 * 1024))
        outcomes["wrong kind"] = await raw_session(server, hello(), Protocol().codes([np.zeros((1, 3), np.int64)]))
        outcomes["wrong rate"] = await raw_session(server, b'\x01{"type":"hello","version":1,"direction":"audio->audio","sample_rate":1}')
        snac_hello = Protocol().hello(Hello(model="snac-24khz", direction="codes->audio", sample_rate=24000))
        bad_codes = Protocol().codes([np.full((1, 1), 5000), np.zeros((1, 2), np.int64), np.zeros((1, 4), np.int64)])
        outcomes["codes out of range"] = await raw_session(server, snac_hello, bad_codes)
        outcomes["unknown model"] = await raw_session(server, hello(model="no-such-model"))
        outcomes["no hello"] = await raw_session(server, Protocol().audio(np.zeros((10, 1), np.float32)))
        # A client that vanishes mid-stream: the server just ends that session.
        from websockets.asyncio.client import connect

        ws = await connect(url(server))
        protocol = Protocol()
        await ws.send(hello())
        await ws.recv()
        protocol.format = "f32"
        await ws.send(protocol.audio(np.zeros((2400, 1), np.float32)))
        ws.transport.abort()
        # A client that never reads while asking for lots of audio back.
        errors, code = await raw_session(
            server, Protocol().hello(Hello(model="encodec-24khz", direction="audio->audio", sample_rate=24000, format="f32")),
            *[_audio_message(i, 12000) for i in range(60)], read=False,
        )
        await asyncio.sleep(server.config.send_timeout_s + 2)
        result = await healthy
        return outcomes, gaps, result

    outcomes, gaps, result = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert outcomes["random bytes"][0] == ["unknown_kind"]
    assert outcomes["oversized"][1] == 1009  # message too big: closed by the WebSocket layer
    assert outcomes["wrong kind"][0] == ["unexpected"]
    assert outcomes["wrong rate"][0] == ["bad_hello"]
    assert outcomes["codes out of range"][0] == ["bad_codes"]
    assert outcomes["unknown model"][0] == ["bad_hello"]
    assert outcomes["no hello"][0] == ["unexpected"]
    assert all(code in (1008, 1009) for _, code in outcomes.values())
    assert gaps and gaps[0] <= 1e-4  # the healthy session's output is exact...
    arrivals = [t for t, _ in result.received_at]
    assert max(np.diff(arrivals)) < 0.5  # ...and never paused for long
    assert len(server.sessions) == 0  # the vanished and the non-reading clients were cleaned up


def _audio_message(sequence, samples):
    import struct

    return b"\x03" + struct.pack("<I", sequence) + np.zeros(samples, "<f4").tobytes()


def test_http_endpoints_and_limits(server):
    base = f"http://127.0.0.1:{server.port}"
    health = json.loads(urllib.request.urlopen(base + "/health").read())
    assert health == {"status": "ok"}  # open to anyone, so it says nothing more
    metrics = json.loads(urllib.request.urlopen(base + "/metrics").read())
    assert {"sessions", "chunk_latency_p50_ms", "rtf", "queue_depth"} <= set(metrics)
    page = urllib.request.urlopen(base + "/").read().decode()
    assert "vocos-mel-24khz" in page and "app.js" in page
    assert json.loads(urllib.request.urlopen(base + "/models?model=encodec-24khz").read())["sample_rate"] == 24000
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/nothing")
    assert info.value.code == 404


def test_token_origin_and_session_limit():
    config = ServerConfig(
        port=0, default_model="vocos-mel-24khz", models=tuple(WEIGHTS), weights=WEIGHTS, token="s3cret", allowed_origins=("http://good.example",), max_sessions=1,
    )
    worker, stop = ComputeWorker(), threading.Event()
    instance = Server(config, worker)
    threading.Thread(target=lambda: asyncio.run(instance.serve()), daemon=True).start()
    threading.Thread(target=worker.run_forever, args=(stop,), daemon=True).start()
    assert instance.ready.wait(30)
    target = f"ws://127.0.0.1:{instance.port}/ws"
    signal_ = speechlike(0.3)

    async def scenario():
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as no_token:
            await stream_audio(target, signal_, 24000, direction="audio->codes")
        with pytest.raises(InvalidStatus) as bad_origin:
            async with connect(target + "?token=s3cret", origin="http://evil.example"):
                pass
        ok = await stream_audio(target, signal_, 24000, direction="audio->codes", token="s3cret")
        first = await connect(target, additional_headers={"Authorization": "Bearer s3cret"}, origin="http://good.example")
        await first.send(hello())
        await first.recv()
        with pytest.raises(ServerError, match="server_busy"):
            await stream_audio(target, signal_, 24000, direction="audio->codes", token="s3cret")
        await first.close()
        return no_token.value.response.status_code, bad_origin.value.response.status_code, ok

    try:
        no_token, bad_origin, ok = asyncio.run(scenario())
        assert (no_token, bad_origin) == (401, 403)
        assert ok.codes
    finally:
        instance.stop()
        stop.set()


def test_serve_command_shuts_down_gracefully_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", "vocos-mel-24khz", "--weights", "vocos-mel-24khz=random"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert "serving on http://127.0.0.1:" in line, process.stderr.read()
    port = int(line.split(":")[2].split("/")[0])

    async def open_session():
        from websockets.asyncio.client import connect

        ws = await connect(f"ws://127.0.0.1:{port}/ws")
        await ws.send(hello())
        await ws.recv()
        process.send_signal(signal.SIGTERM)
        await ws.wait_closed()
        return ws.close_code

    code = asyncio.run(asyncio.wait_for(open_session(), 60))
    assert process.wait(timeout=30) == 0
    assert code == 1001  # going away


def test_client_command_streams_a_file(served, tmp_path):
    import soundfile

    signal_ = speechlike(2.0, seed=5)
    soundfile.write(tmp_path / "in.wav", signal_, 24000, subtype="FLOAT")
    result = subprocess.run(
        [sys.executable, "-m", "codecstream", "client", "--url", f"ws://127.0.0.1:{served}/ws", "--input", str(tmp_path / "in.wav"),
         "--output", str(tmp_path / "out.wav")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "through vocos-mel-24khz" in result.stdout
    out, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    model = cs.load("vocos-mel-24khz", weights="random")
    with torch.inference_mode():
        expected = model.decode(model.encode(torch.from_numpy(signal_)[None, None]))[0, 0].numpy()
    assert rate == 24000 and len(out) == len(expected) == 47872  # vocos center mode: 256·(F − 1)
    assert np.abs(out - np.clip(expected, -1, 1)).max() <= 2 / 32768 + 1e-4
