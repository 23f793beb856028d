"""Each finding of the service review (issue 12), reproduced against a real server: what froze,
exhausted or broke it before is now refused at once with a stable error code, and codes->audio
works for every model whose codes travel in CODES messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import codecstream as cs
from helpers import running_server
from codecstream.latency import decoder_latency
from codecstream.server.app import ComputeWorker, ServerConfig, _Inbox
from codecstream.server.client import stream_audio
from codecstream.server.protocol import ERROR_CODES, Hello, Protocol

pytest.importorskip("websockets")

WEIGHTS = {name: "random" for name in ("encodec-24khz", "snac-24khz", "vocos-mel-24khz")}


@pytest.fixture(scope="module")
def server():
    config = ServerConfig(port=0, default_model="encodec-24khz", models=tuple(WEIGHTS), weights=WEIGHTS, hello_timeout_s=2.0, send_timeout_s=1.5)
    with running_server(config) as instance:
        yield instance


def ws_url(server, path="/ws"):
    return f"ws://127.0.0.1:{server.port}{path}"


async def first_answer(server, *messages, headers=None, origin=None):
    """Send ``messages`` on a new connection; return ``("ready", dict)`` or ``(error_code, message)``."""
    from websockets.asyncio.client import connect

    async with connect(ws_url(server), additional_headers=headers, origin=origin, max_size=1 << 24) as ws:
        for message in messages:
            await ws.send(message)
        answer = await asyncio.wait_for(ws.recv(), 30)
    if answer[0] == 0x05:
        body = json.loads(answer[1:])
        return body["code"], body["message"]
    return json.loads(answer[1:])["type"], json.loads(answer[1:])


async def first_error(server, *messages):
    """Send ``messages``; return the first error ``(code, message)``, skipping ready and data."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(ws_url(server), max_size=1 << 24) as ws:
        for message in messages:
            await ws.send(message)
        try:
            while True:
                answer = await asyncio.wait_for(ws.recv(), 30)
                if answer[0] == 0x05:
                    body = json.loads(answer[1:])
                    return body["code"], body["message"]
        except ConnectionClosed:
            return "closed", ""


def hello(model="encodec-24khz", direction="audio->audio", **options):
    return Protocol().hello(Hello(model=model, direction=direction, sample_rate=24000, format="f32", options=options))


def raw_hello(**fields):
    body = {"type": "hello", "version": 1, "model": "encodec-24khz", "direction": "audio->audio", "sample_rate": 24000, **fields}
    return b"\x01" + json.dumps(body).encode()


def health_ms(server) -> float:
    started = time.perf_counter()
    urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10).read()
    return 1000 * (time.perf_counter() - started)


# -- 1. one hello froze the server ---------------------------------------------------------
def test_huge_windowed_options_are_refused_at_once(server):
    async def scenario():
        answers = {}
        for name, value in (("lookahead_frames", 3_000_000_000), ("block_frames", 20_000_000), ("crossfade_frames", 10**7)):
            started = time.perf_counter()
            answers[name] = await first_answer(server, hello(mode="windowed", **{"lookahead_frames": 1, name: value}))
            answers[name] += (time.perf_counter() - started,)
        return answers

    answers = asyncio.run(asyncio.wait_for(scenario(), 60))
    for name, (code, message, seconds) in answers.items():
        assert code == "bad_options" and name in message, (name, code, message)
        assert seconds < 5
    assert health_ms(server) < 2000


def test_latency_search_does_not_walk_frames():
    """``decoder_latency`` of a decoder whose first output needs 10**12 frames: a bisection
    (tens of calls), where a walk over frames took minutes."""
    calls = []

    def samples_after(frames):
        calls.append(frames)
        return max(0, frames - 10**12) * 4

    assert decoder_latency(samples_after, 4) == (4 * 10**12, (10**12) * 4)
    assert len(calls) < 300
    model = cs.load("encodec-24khz", weights="random")
    with pytest.raises(cs.OptionError, match="lookahead_frames"):
        model.decoder_stream(mode="windowed", lookahead_frames=10**7)
    stream = model.decoder_stream(mode="windowed", lookahead_frames=100, block_frames=300, crossfade_frames=7, context_frames=3)
    assert (stream.latency_samples, stream.startup_latency_samples) == ((100 + 300 - 1 + 7) * 320, (100 + 300 - 1) * 320)


# -- 2. a few KB cost gigabytes --------------------------------------------------------------
def test_message_work_is_bounded(server):
    snac = server.model("snac-24khz")

    async def scenario():
        from websockets.asyncio.client import connect

        answers = {}
        # 512 finest SNAC frames (11 s of audio) in 3.6 KB: refused before any decoding.
        codes = [np.zeros((1, 128), np.int32), np.zeros((1, 256), np.int32), np.zeros((1, 512), np.int32)]
        answers["snac 11 s"] = await first_error(server, hello("snac-24khz", "codes->audio"), Protocol().codes(codes))
        # 2000 EnCodec frames of one code-book (8 KB): 26 s of audio.
        answers["encodec 26 s"] = await first_error(server, hello("encodec-24khz", "codes->audio"), Protocol().codes([np.zeros((1, 2000), np.int32)]))
        # 1.5 s of audio in one message (under the byte limit).
        protocol = Protocol()
        protocol.format = "f32"
        answers["audio 1.5 s"] = await first_error(server, hello(), protocol.audio(np.zeros((36000, 1), np.float32)))
        # A level running ahead of the others is buffered by the model: bounded too.
        async with connect(ws_url(server)) as ws:
            protocol = Protocol()
            await ws.send(protocol.hello(Hello(model="snac-24khz", direction="codes->audio", sample_rate=24000)))
            await ws.recv()
            for _ in range(3):
                await ws.send(protocol.codes([np.zeros((1, 10), np.int32), np.zeros((1, 0), np.int32), np.zeros((1, 0), np.int32)]))
            answer = await asyncio.wait_for(ws.recv(), 30)
            answers["drifting levels"] = (json.loads(answer[1:])["code"], "")
        return answers

    rss_before = _rss_mb()
    started = time.process_time()
    answers = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answers["snac 11 s"][0] == "too_large"
    assert answers["encodec 26 s"][0] == "too_large"
    assert answers["audio 1.5 s"][0] == "too_large"
    assert answers["drifting levels"][0] == "bad_codes"
    assert time.process_time() - started < 5  # no decoding happened (this process hosts the server)
    assert _rss_mb() - rss_before < 200
    assert snac is server.model("snac-24khz")


def _rss_mb(pid="self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_long_messages_are_split_into_turns_and_sessions_take_turns():
    """A session's 10-turn job does not hold the compute thread: a job submitted after it
    finishes after one of its turns, not after all ten; and each turn's output reaches the event
    loop as soon as that turn is done, in order."""
    worker, stop, order, delivered = ComputeWorker(), threading.Event(), [], []

    def long_job():
        def turns():
            for index in range(10):
                order.append(f"long {index}")
                yield index

        return turns()

    async def scenario():
        def on_turn(output):
            delivered.append((output, len(order)))

        long = worker.submit_turns(long_job, on_turn)
        short = worker.submit(lambda: order.append("short") or "done")
        return await long, await short

    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        long_result, short_result = asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        stop.set()
    assert long_result is None and short_result == "done"
    assert order.index("short") == 1  # right after the long job's first turn
    assert [output for output, _ in delivered] == list(range(10))


# -- 3. windowed options chosen by the client were quadratic -------------------------------
def test_windowed_context_is_bounded(server):
    async def scenario():
        huge = await first_answer(server, hello(mode="windowed", lookahead_frames=0, context_frames=10**9, block_frames=1))
        wide = await first_answer(server, hello(mode="windowed", lookahead_frames=200, context_frames=300, block_frames=100))
        fine = await first_answer(server, hello(mode="windowed", lookahead_frames=2, context_frames=8, block_frames=2))
        return huge, wide, fine

    huge, wide, fine = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert huge[0] == "bad_options" and "context_frames" in huge[1]
    assert wide[0] == "bad_options" and "at most 512" in wide[1]  # the window a decode may span
    assert fine[0] == "ready" and fine[1]["latency_ms"] == pytest.approx((320 + 3 * 320) / 24)


# -- 4. defaults invited a drive-by ---------------------------------------------------------
def test_only_served_models_and_same_origin_pages(server):
    base = f"http://127.0.0.1:{server.port}"

    def get(path, **headers):
        request = urllib.request.Request(base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    async def scenario():
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        answers = {"unserved": await first_answer(server, hello("dac-16khz"))}
        for name, origin in (("evil", "http://evil.example"), ("same", f"http://127.0.0.1:{server.port}")):
            try:
                async with connect(ws_url(server), origin=origin) as ws:
                    answers[name] = ws.response.status_code
            except InvalidStatus as exc:
                answers[name] = exc.response.status_code
        answers["rebound"] = _handshake_status(server.port, f"rebound.example:{server.port}")
        answers["two hosts"] = _handshake_status(server.port, f"127.0.0.1:{server.port}\r\nHost: rebound.example")
        return answers

    answers = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answers["unserved"][0] == "bad_hello" and "not served" in answers["unserved"][1]
    assert "dac-16khz" not in server._models  # nothing was loaded (or downloaded) for it
    assert answers["evil"] == 403 and answers["same"] == 101
    assert answers["rebound"] == 403 and answers["two hosts"] == 400
    assert get("/models", Origin="http://evil.example")[0] == 403
    assert get("/metrics", Origin="http://evil.example")[0] == 403
    assert get("/models?model=dac-16khz")[1].startswith('{"error"')
    assert "dac-16khz" not in server._models
    status, body = get("/models")
    assert status == 200 and {m["model"] for m in json.loads(body)["models"]} == set(WEIGHTS)
    assert get("/health", Origin="http://evil.example") == (200, '{"status": "ok"}\n')


def test_token_guards_every_endpoint_and_unsafe_settings_are_refused():
    with pytest.raises(cs.ConfigError, match="empty"):
        ServerConfig(token="").validate()
    with pytest.raises(cs.ConfigError, match="needs --token"):
        ServerConfig(host="0.0.0.0").validate()
    ServerConfig(host="0.0.0.0", token="s3cret").validate()
    for args in (["--token", ""], ["--host", "0.0.0.0"]):
        result = subprocess.run([sys.executable, "-m", "codecstream", "serve", "--port", "0", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "ConfigError" in result.stderr

    config = ServerConfig(port=0, default_model="vocos-mel-24khz", weights=WEIGHTS, token="s3cret")
    with running_server(config) as instance:
        base = f"http://127.0.0.1:{instance.port}"
        codes = {}
        bodies = {}
        for path in ("/models", "/metrics", "/replay?layout=bark"):
            for label, headers in (("none", {}), ("good", {"Authorization": "Bearer s3cret"})):
                try:
                    with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10) as response:
                        codes[path, label], bodies[path] = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    codes[path, label] = exc.code
        assert codes == {
            ("/models", "none"): 401, ("/models", "good"): 200, ("/metrics", "none"): 401, ("/metrics", "good"): 200,
            ("/replay?layout=bark", "none"): 401, ("/replay?layout=bark", "good"): 200,
        }
        # The TTS tab's replay needs the layout's codec served: nothing is loaded for it.
        assert b"encodec-24khz, which this server does not serve" in bodies["/replay?layout=bark"]
        assert "encodec-24khz" not in instance._models


# -- 5. --max-sessions was a race -------------------------------------------------------------
def test_session_limit_holds_under_concurrent_hellos():
    config = ServerConfig(port=0, default_model="vocos-mel-24khz", weights=WEIGHTS, max_sessions=2)
    with running_server(config) as instance:
        async def one():
            from websockets.asyncio.client import connect

            ws = await connect(ws_url(instance))
            await ws.send(hello("vocos-mel-24khz", "audio->codes"))
            answer = await asyncio.wait_for(ws.recv(), 30)
            return ws, "ready" if answer[0] == 0x01 else json.loads(answer[1:])["code"]

        async def scenario():
            results = await asyncio.gather(*[one() for _ in range(8)])
            for ws, _ in results:
                await ws.close()
            return sorted(answer for _, answer in results)

        answers = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answers == ["ready"] * 2 + ["server_busy"] * 6


# -- 6. a client that stops reading kept its TCP connection ------------------------------------
def _raw_websocket(port: int, receive_buffer: int = 4096) -> socket.socket:
    """A WebSocket client on a plain socket with a tiny receive buffer, for a client that
    never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101")
    return sock


def _handshake_status(port: int, host: str) -> int:
    """The HTTP status a WebSocket handshake with this ``Host`` gets (a page whose name was
    rebound to 127.0.0.1 sends its own name)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return int(sock.recv(1024).split(b" ")[1])


def _client_frame(payload: bytes) -> bytes:
    """One masked binary WebSocket frame (mask of zeros: the payload goes as it is)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    return header + b"\x00\x00\x00\x00" + payload


def test_a_client_that_stops_reading_is_disconnected(server):
    sock = _raw_websocket(server.port)
    # SNAC codes in, 192 kHz stereo float audio out: 0.4 KB of codes ask for 1.5 MB of audio.
    sock.sendall(_client_frame(Protocol().hello(Hello(model="snac-24khz", direction="codes->audio", sample_rate=192000, channels=2, format="f32"))))
    protocol = Protocol()
    codes = [np.zeros((1, 11), np.int32), np.zeros((1, 22), np.int32), np.zeros((1, 44), np.int32)]
    sock.settimeout(0.5)
    sent = 0
    with contextlib.suppress(OSError):  # the server may cut us off while we still send
        for _ in range(12):  # 11 s of audio asked for, never read
            sock.sendall(_client_frame(protocol.codes(codes)))
            sent += 1
    # Never read: the server's sends block, and after its send timeout it must drop us, TCP too.
    connections = server._server.all_connections  # registered once the handshake is done
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not connections:
        time.sleep(0.05)
    assert connections
    deadline = time.monotonic() + server.config.send_timeout_s + 15
    while time.monotonic() < deadline and connections:
        time.sleep(0.2)
    server_side_open = len(connections)
    sock.settimeout(2.0)
    try:
        while sock.recv(1 << 20):  # what reached us before the end, then EOF
            pass
        closed = True
    except socket.timeout:
        closed = False
    except OSError:  # reset: the server aborted the connection
        closed = True
    sock.close()
    assert sent > 0 and server_side_open == 0 and closed, (sent, server_side_open, closed)
    assert not server.sessions


# -- 7. codes->audio was broken for EnCodec and Vocos-EnCodec -----------------------------------
@pytest.fixture(scope="module")
def codec_server(tmp_path_factory):
    from test_neucodec import SMALL, hf_model

    directory = tmp_path_factory.mktemp("neucodec")
    hf_model(SMALL, directory, seed=3)
    names = ("encodec-24khz", "encodec-32khz", "vocos-encodec-24khz", "snac-24khz", "dac-16khz", "mimi", "neucodec")
    weights = {name: "random" for name in names} | {"neucodec": str(directory)}
    config = ServerConfig(port=0, default_model="encodec-24khz", models=names, weights=weights)
    with running_server(config) as instance:
        yield instance


def _codes_for(model, frames: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    spec = model.token_spec
    if len(spec.levels) > 1:  # SNAC: one row per level, coarsest first
        finest = min(level.hop_length for level in spec.levels)
        return [torch.randint(0, level.codebook_size, (1, frames * finest // level.hop_length), generator=generator) for level in spec.levels]
    books = model.empty_codes(1, model.encoder_options()).shape[1]
    return torch.randint(0, spec.levels[0].codebook_size, (1, books, frames), generator=generator)


async def _decode_remotely(server, model, codes, options, pieces: int):
    from websockets.asyncio.client import connect

    from codecstream.server.session import codes_to_wire

    protocol = Protocol(max_message_bytes=1 << 24)
    audio = []
    async with connect(ws_url(server), max_size=1 << 24) as ws:
        await ws.send(protocol.hello(Hello(model=model.name, direction="codes->audio", sample_rate=model.sample_rate, format="f32", options=options)))
        ready = protocol.receive(await ws.recv())
        assert type(ready).__name__ == "Ready", ready
        frames = model.num_frames(codes)
        bounds = np.linspace(0, frames, pieces + 1).astype(int)
        for start, end in zip(bounds[:-1], bounds[1:]):  # uneven pieces, like a TTS model's bursts
            await ws.send(protocol.codes(codes_to_wire(model.slice_codes(codes, int(start), int(end)))))
        await ws.send(protocol.end())
        async for message in ws:
            event = protocol.receive(message)
            if hasattr(event, "samples"):
                audio.append(event.samples)
            if type(event).__name__ in ("End", "ErrorMessage"):
                assert type(event).__name__ == "End", event
                break
    return np.concatenate(audio)[:, 0]


@pytest.mark.parametrize("name", ["encodec-24khz", "encodec-32khz", "vocos-encodec-24khz", "snac-24khz", "dac-16khz", "mimi", "neucodec"])
def test_codes_to_audio_equals_the_model_for_every_model_with_codes(codec_server, name):
    model = codec_server.model(name)
    frames = 16 if name == "snac-24khz" else 30
    codes = _codes_for(model, frames, seed=len(name))
    options = {"mode": "windowed", "lookahead_frames": 4, "context_frames": 8, "block_frames": 2} if name == "neucodec" else {}
    received = asyncio.run(asyncio.wait_for(_decode_remotely(codec_server, model, codes, options, pieces=4), 120))
    with torch.inference_mode():
        if name == "neucodec":  # windowed: the same stream here, pushed all at once
            stream = model.decoder_stream(**options)
            expected = torch.cat([stream.push(codes), stream.flush()], dim=-1)[0, 0].numpy()
        else:
            expected = model.decode(codes)[0, 0].numpy()
    assert received.shape == expected.shape
    assert np.abs(received - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_bark_tokens_decode_through_the_server(codec_server):
    from codecstream.tokens import BarkDecoder
    from codecstream.tokens.remote import RemoteTokenDecoder

    model = codec_server.model("encodec-24khz")
    generator = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 1024, (24, 8), generator=generator).reshape(-1)  # fine layout: 8 per frame
    remote = RemoteTokenDecoder(ws_url(codec_server), BarkDecoder(model))
    pieces = [remote.push(tokens[i : i + 5]) for i in range(0, len(tokens), 5)]
    received = torch.cat(pieces + [remote.flush()], dim=-1)[0, 0].numpy()
    local = BarkDecoder(model)
    with torch.inference_mode():
        expected = torch.cat([local.push(tokens), local.stream.flush()], dim=-1)[0, 0].numpy()
    assert received.shape == expected.shape and np.abs(received - expected).max() <= 1e-4


def test_segment_codes_are_refused_with_a_way_out():
    config = ServerConfig(port=0, default_model="encodec-48khz", weights={"encodec-48khz": "random"})
    with running_server(config) as instance:
        answer = asyncio.run(asyncio.wait_for(first_answer(instance, Protocol().hello(Hello(model="encodec-48khz", direction="codes->audio", sample_rate=48000, channels=2))), 60))
    assert answer[0] == "bad_hello" and "audio->audio" in answer[1]


# -- 8. malformed input answered `internal` with raw exception text ----------------------------
def test_malformed_hellos_get_stable_codes_never_internal(server):
    cases = {
        "deep nesting": (b"\x01" + b"[" * 200_000, "bad_json"),
        "5000 digits": (b'\x01{"type":"hello","version":1,"sample_rate":' + b"9" * 5000 + b"}", "bad_json"),
        "invalid utf-8": (b"\x01\xff\xfe{}", "bad_json"),
        "batch_size": (raw_hello(options={"batch_size": 2}), "bad_options"),
        "bandwidth list": (raw_hello(options={"bandwidth": [6]}), "bad_options"),
        "bandwidth string": (raw_hello(options={"bandwidth": "6"}), "bad_options"),
        "bandwidth 1e400": (b"\x01" + json.dumps({"type": "hello", "version": 1, "model": "encodec-24khz", "direction": "audio->audio", "sample_rate": 24000}).encode()[:-1] + b',"options":{"bandwidth":1e400}}', "bad_options"),
        "bandwidth NaN": (b"\x01" + json.dumps({"type": "hello", "version": 1, "model": "encodec-24khz", "direction": "audio->audio", "sample_rate": 24000, "options": {"bandwidth": float("nan")}}).encode(), "bad_options"),
        "bandwidth 7": (raw_hello(options={"bandwidth": 7}), "bad_options"),
        "noise on encodec": (raw_hello(options={"noise": True}), "bad_options"),
        "noise_seed -1": (raw_hello(model="snac-24khz", direction="codes->audio", options={"noise_seed": -1}), "bad_options"),
        "noise_seed bool": (raw_hello(model="snac-24khz", direction="codes->audio", options={"noise_seed": True}), "bad_options"),
        "mode other": (raw_hello(options={"mode": "fast"}), "bad_options"),
        "lookahead float": (raw_hello(options={"mode": "windowed", "lookahead_frames": 1.5}), "bad_options"),
        "bandwidth when decoding": (raw_hello(direction="codes->audio", options={"bandwidth": 6}), "bad_options"),
        "options list": (raw_hello(options=[1, 2]), "bad_hello"),
        "model number": (raw_hello(model=5), "bad_hello"),
        "rate string": (raw_hello(sample_rate="24000"), "bad_hello"),
        "version 2": (raw_hello(version=2), "unsupported_version"),
    }

    async def scenario():
        return {name: await first_answer(server, message) for name, (message, _) in cases.items()}

    answers = asyncio.run(asyncio.wait_for(scenario(), 120))
    for name, (_, expected) in cases.items():
        code, message = answers[name]
        assert code == expected, (name, code, message)
        assert "Traceback" not in message and "internal" not in code
    assert set(code for code, _ in answers.values()) <= set(ERROR_CODES)


def test_connections_without_a_hello_are_limited_and_timed_out():
    config = ServerConfig(port=0, default_model="vocos-mel-24khz", weights=WEIGHTS, max_pending_connections=3, hello_timeout_s=1.5)
    with running_server(config) as instance:
        async def scenario():
            from websockets.asyncio.client import connect

            waiting = [await connect(ws_url(instance)) for _ in range(3)]
            await asyncio.sleep(0.2)
            extra = await connect(ws_url(instance))
            refused = json.loads((await asyncio.wait_for(extra.recv(), 10))[1:])["code"]
            timed_out = []
            for ws in waiting:
                timed_out.append(json.loads((await asyncio.wait_for(ws.recv(), 10))[1:])["code"])
                await asyncio.wait_for(ws.wait_closed(), 10)
            await extra.close()
            return refused, timed_out

        refused, timed_out = asyncio.run(asyncio.wait_for(scenario(), 60))
        assert refused == "server_busy" and timed_out == ["hello_timeout"] * 3
        assert instance.pending_connections == 0


def test_queued_bytes_per_session_are_capped():
    async def scenario():
        inbox = _Inbox(max_bytes=1000)
        await inbox.put("a", 600)
        blocked = asyncio.ensure_future(inbox.put("b", 600))  # would exceed the cap: waits
        await asyncio.sleep(0.05)
        assert not blocked.done() and inbox.bytes == 600
        assert await inbox.get() == "a"
        await asyncio.wait_for(blocked, 1)
        await inbox.put("c", 5000)  # waits while anything is queued...
        return inbox.bytes

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(asyncio.wait_for(scenario(), 1))

    async def alone():
        inbox = _Inbox(max_bytes=1000)
        await inbox.put("big", 5000)  # ...but one message larger than the cap still gets through
        return inbox.bytes

    assert asyncio.run(alone()) == 5000


def test_recordings_are_private_and_bounded(tmp_path):
    config = ServerConfig(port=0, default_model="encodec-24khz", weights=WEIGHTS, record_dir=tmp_path / "rec", record_max_bytes=48_000)
    with running_server(config) as instance:
        signal = np.random.default_rng(0).uniform(-0.5, 0.5, 24000).astype(np.float32)
        asyncio.run(asyncio.wait_for(stream_audio(ws_url(instance), signal, 24000, audio_format="f32", chunk_ms=100), 60))
        time.sleep(0.5)  # the recorder thread closes its files after the session
    files = sorted((tmp_path / "rec").iterdir())
    assert len(files) == 2 and (tmp_path / "rec").stat().st_mode & 0o077 == 0
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.stat().st_size <= 48_000 + 1024  # the budget, plus the WAV header


def test_dependency_floors_exclude_unsafe_torch_and_old_websockets():
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"torch>=2.10"' in text and '"websockets>=13"' in text
