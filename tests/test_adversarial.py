"""``codecstream serve`` under attack, as one real server process, while an honest client streams.

What this proves, all at once against one ``python -m codecstream serve`` process:

1. An honest real-time encodec-24khz audio->audio session (20 s of speech-like audio in 20 ms
   chunks) gets exactly the offline roundtrip back (1e-4), and its output never stalls for
   0.5 s, while everything below happens next to it.
2. Over 10,000 fuzzed frames (mutated valid frames, hostile hello JSON, long sessions of
   mutated data frames) never produce an ``internal`` error: every ERROR code the server sends
   is one of ``ERROR_CODES``, and no connection is closed with 1011 (a crashed handler).
3. Size limits: one byte over ``max_message_bytes`` is closed with 1009; more than
   ``max_message_ms`` of audio or codes under the byte limit is ``too_large``; permessage-deflate
   is never negotiated.
4. 100 abandoned connections (silent TCP, half an HTTP request, no hello, half a hello frame)
   are all closed by the server after the hello timeout, and ``pending_connections`` returns
   to 0.
5. A client that sends audio and never reads is dropped (its TCP connection torn down) after
   the send timeout, not by the idle timeout.
6. The server's memory (VmRSS) grows by less than 50 MB over the whole run.

The server runs with its default compute threads and send timeout (10 s; there is no flag
for it). Run ``pytest -s tests/test_adversarial.py`` to see the
figures. Every wait is bounded; the whole module takes about 30 s.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import codecstream as cs
from codecstream import signals
from codecstream.server.client import stream_audio
from codecstream.server.protocol import ERROR_CODES, Hello, Kind, Protocol

pytest.importorskip("websockets")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and TCP_INFO")

SEED = 20240611
HELLO_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 10.0  # the server's default; `codecstream serve` has no flag for it
MAX_MESSAGE_BYTES = 256 * 1024  # the server's default
RATE = 24000
HONEST_SECONDS = 20.0
FUZZ_FRAMES = 10_000
FUZZ_SECONDS = 14.0  # the fuzz frames are spread over this long, inside the honest session
FUZZ_CONCURRENCY = 8
ABANDONED = 100
MAX_GAP_S = 0.5
MAX_RSS_GROWTH_MB = 50.0
SERVE = [
    sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", "encodec-24khz", "--models", "snac-24khz",
    "--weights", "encodec-24khz=random", "--weights", "snac-24khz=random", "--max-sessions", "200",
    "--hello-timeout", str(HELLO_TIMEOUT_S), "--idle-timeout", str(IDLE_TIMEOUT_S),
]
TCP_ESTABLISHED = 1


# -- the server process ---------------------------------------------------------------------
@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    stderr_path: str

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc/PID/status")

    def metrics(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time of all the server's threads, and their time waiting for a CPU (runnable)."""
        ran = waited = 0.0
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            try:
                with open(f"/proc/{self.process.pid}/task/{task}/schedstat") as stat:
                    on_cpu, on_queue, _ = stat.read().split()
            except OSError:  # the thread ended meanwhile
                continue
            ran, waited = ran + int(on_cpu) / 1e9, waited + int(on_queue) / 1e9
        return ran, waited

    def stderr(self) -> str:
        with open(self.stderr_path, errors="replace") as handle:
            return handle.read()


def start_server(stderr_path: str) -> subprocess.Popen:
    # The server's default compute threads (all cores but one) leave a core to its event loop.
    with open(stderr_path, "w") as stderr:  # a file, not a pipe: a chatty server never blocks
        return subprocess.Popen(SERVE, stdout=subprocess.PIPE, stderr=stderr, text=True)


def read_port(process: subprocess.Popen, stderr_path: str) -> int:
    line = process.stdout.readline()
    if "serving on http://127.0.0.1:" not in line:
        with open(stderr_path) as stderr:
            raise AssertionError(f"the server did not start: {stderr.read()[-3000:]}")
    return int(line.split(":")[2].split("/")[0])


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory() as directory:
        stderr_path = os.path.join(directory, "serve.stderr")
        process = start_server(stderr_path)
        try:
            yield process, stderr_path
        finally:
            if process.poll() is None:  # the test failed before its own SIGTERM
                process.kill()
                process.wait(timeout=10)


# -- tallies ----------------------------------------------------------------------------------
@dataclass
class Tally:
    """Everything the adversaries sent and got back."""

    frames: int = 0
    connections: int = 0
    frames_by_kind: collections.Counter = field(default_factory=collections.Counter)
    connections_by_kind: collections.Counter = field(default_factory=collections.Counter)
    codes: collections.Counter = field(default_factory=collections.Counter)  # ERROR codes received
    close_codes: collections.Counter = field(default_factory=collections.Counter)

    def record_error(self, payload: bytes) -> str:
        try:
            code = json.loads(payload.decode())["code"]
        except (ValueError, KeyError, TypeError):
            code = "<malformed ERROR message>"
        code = code if isinstance(code, str) else f"<non-string code {code!r}>"
        self.codes[code] += 1
        return code


class Pacer:
    """Spreads ``total`` frames evenly over ``seconds``: senders wait when ahead of schedule."""

    def __init__(self, total: int, seconds: float) -> None:
        self.rate = total / seconds
        self.started = time.monotonic()

    async def wait(self, sent: int) -> None:
        ahead = sent / self.rate - (time.monotonic() - self.started)
        await asyncio.sleep(max(0.0, ahead))


# -- valid frames and their mutations -------------------------------------------------------------
# Frames per SNAC level (coarse to fine, strides 4, 2, 1); a decode runs once a whole coarse frame
# is in, so most messages only buffer.
SNAC_SHAPES = [(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0)]


def encodec_hello(fmt: str) -> bytes:
    return Protocol().hello(Hello(model="encodec-24khz", direction="audio->audio", sample_rate=RATE, format=fmt))


def snac_hello(fmt: str) -> bytes:
    return Protocol().hello(Hello(model="snac-24khz", direction="codes->audio", sample_rate=RATE, format=fmt))


def tiny_audio(rng: random.Random, protocol: Protocol) -> bytes:
    """1-2 samples: cheap to compute (the encoder mostly just buffers), so the fuzzing leaves
    the compute thread to the honest session."""
    samples = np.array([[rng.uniform(-0.5, 0.5)] for _ in range(rng.randint(1, 2))], np.float32)
    return protocol.audio(samples)


def small_codes(rng: random.Random, protocol: Protocol) -> bytes:
    frames = rng.choice(SNAC_SHAPES)
    return protocol.codes([np.array([[rng.randrange(4096) for _ in range(n)]], np.int32).reshape(1, n) for n in frames])


def codes_data_offset(frame: bytes) -> int:
    levels = frame[6] if len(frame) > 6 else 0
    return 7 + 6 * levels


def flip_bytes(rng: random.Random, frame: bytes, start: int = 0) -> bytes:
    if len(frame) <= start:
        return frame
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(start, len(data))] ^= rng.randint(1, 255)
    return bytes(data)


def truncate(rng: random.Random, frame: bytes) -> bytes:
    return frame[: rng.randrange(len(frame))] if frame else frame


def extend(rng: random.Random, frame: bytes) -> bytes:
    return frame + rng.randbytes(rng.randint(1, 16))


def set_kind(rng: random.Random, frame: bytes) -> bytes:
    return bytes([rng.choice([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x7F, 0xFF])]) + frame[1:]


def set_sequence(rng: random.Random, frame: bytes) -> bytes:
    if len(frame) < 5:
        return frame
    (sequence,) = struct.unpack_from("<I", frame, 1)
    new = rng.choice([0, sequence + 1, max(0, sequence - 1), 2**32 - 1, 2**31, rng.getrandbits(32)])
    return frame[:1] + struct.pack("<I", new % 2**32) + frame[5:]


def set_codes_header(rng: random.Random, frame: bytes) -> bytes:
    """Change the dtype, level count, or one level's rows or frames of a CODES message."""
    if len(frame) < 7:
        return frame
    data = bytearray(frame)
    target = rng.choice(["dtype", "levels", "rows", "frames"])
    if target == "dtype":
        data[5] = rng.choice([1, 1, 2, 255])
    elif target == "levels":
        data[6] = rng.choice([0, 1, 2, 4, 16, 17, 255])
    else:
        level = rng.randrange(max(1, min(data[6], (len(data) - 7) // 6)))
        offset = 7 + 6 * level + (0 if target == "rows" else 2)
        if offset + (2 if target == "rows" else 4) <= len(data):
            if target == "rows":
                struct.pack_into("<H", data, offset, rng.choice([0, 2, 3, 65535, rng.getrandbits(16)]))
            else:
                struct.pack_into("<I", data, offset, rng.choice([0, 1, 48, 1000, 2**31, 2**32 - 1, rng.getrandbits(32)]))
    return bytes(data)


HOSTILE = [flip_bytes, truncate, extend, set_kind, set_sequence]


def hostile(rng: random.Random, frame: bytes) -> bytes | str:
    """A mutation that usually breaks the frame (the server must answer with a stable code)."""
    roll = rng.random()
    if roll < 0.02:
        return "text " + frame[:20].hex()  # a text message
    if roll < 0.04:
        return b""
    if frame[:1] == bytes([Kind.CODES]) and roll < 0.3:
        return set_codes_header(rng, frame)
    return rng.choice(HOSTILE)(rng, frame)


def benign(rng: random.Random, frame: bytes) -> bytes:
    """Flip bytes in the samples or code values only: the frame usually stays valid."""
    start = codes_data_offset(frame) if frame[:1] == bytes([Kind.CODES]) else 5
    return flip_bytes(rng, frame, start) if rng.random() < 0.6 else frame


def control(kind: str, **fields: Any) -> bytes:
    return bytes([Kind.CONTROL]) + json.dumps({"type": kind, **fields}).encode()


def any_valid_frame(rng: random.Random) -> bytes:
    """A valid frame of any kind, as the first message of a connection (sequence 0)."""
    makers: list[Callable[[], bytes]] = [
        lambda: encodec_hello("pcm16"), lambda: encodec_hello("f32"), lambda: snac_hello("pcm16"), lambda: snac_hello("f32"),
        lambda: tiny_audio(rng, _format(Protocol(), "pcm16")), lambda: tiny_audio(rng, _format(Protocol(), "f32")),
        lambda: small_codes(rng, Protocol()), Protocol.end, lambda: Protocol.stats({"x": 1}),
        lambda: Protocol.error("internal", "from the client"),
    ]
    return rng.choice(makers)()


def _format(protocol: Protocol, fmt: str) -> Protocol:
    protocol.format = fmt
    return protocol


# -- hello JSON fuzz ----------------------------------------------------------------------------
HUGE_DIGITS = "1" + "0" * 5000  # 10**5000: over Python's int conversion limit
BAD_VALUES = [
    "1e400", "-1e400", HUGE_DIGITS, "-" + HUGE_DIGITS, "-1", "0", "3e9", "3000000000", "4294967296", "9223372036854775808",
    "1.5", "1.0", "1e-400", "NaN", "Infinity", "-Infinity", "null", "true", "false", '""', '"x"', '"24000"', '"\\ud800"',
    '"\\u0000"', "[]", "[1,2,3]", "{}", '{"a":{"b":[null]}}', "[" * 40 + "]" * 40, '"' + "m" * 4000 + '"',
]
HELLO_FIELDS = {  # field: a valid value (JSON text)
    "version": "1", "model": '"encodec-24khz"', "direction": '"audio->audio"', "sample_rate": "24000", "channels": "1",
    "format": '"pcm16"', "options": "{}",
}
GOOD_FIELD_VALUES = {
    "model": ['"snac-24khz"', '""', '"no-such-model"', '"encodec-48khz"'],
    "direction": ['"codes->audio"', '"audio->codes"', '"AUDIO->AUDIO"'],
    "sample_rate": ["4000", "4001", "8000", "44100", "191999", "192000", "192001", "3999"],
    "channels": ["2", "3"], "format": ['"f32"', '"s16"'], "version": ["2", "0"],
}
OPTION_NAMES = [
    "bandwidth", "n_codebooks", "noise", "noise_seed", "mode", "lookahead_frames", "context_frames", "block_frames",
    "crossfade_frames", "batch_size", "unknown_option", "",
]
GOOD_OPTION_VALUES = {
    "bandwidth": ["1.5", "3", "6.0", "12", "24.0", "7"], "noise": ["true", "false"], "noise_seed": ["0", "2147483647", "2147483648"],
    "mode": ['"exact"', '"windowed"'], "n_codebooks": ["8"], "batch_size": ["1"],
}
FRAME_OPTIONS = ("lookahead_frames", "context_frames", "block_frames", "crossfade_frames")
# Big structural payloads, built once.
STRUCTURAL = [
    b"[" * 100_000,
    b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    b'{"type":"hello","options":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"type":"hello","model":"\xff\xfe\xc0"}',
    b"\xef\xbb\xbf" + json.dumps({"type": "hello", "sample_rate": RATE}).encode(),
    b"\xc3\x28", b"", b"[]", b"null", b'"hello"', b"1e400", HUGE_DIGITS.encode(), b"[" + b"1," * 60_000 + b"1]", b"{}",
    b'{"type":"HELLO"}', b'{"type":["hello"]}', b'{"type":{"hello":1}}', b'{"type":null}', b'{"type":"end"}',
    b'{"type":"stats"}', b'{"type":"ready"}', b'{"type":"ready","nonsense":1}',
    control("ready", model="encodec-24khz", direction="audio->audio", sample_rate=RATE, model_sample_rate=RATE,
            frame_rate=75.0, latency_ms=1.0)[1:],
    b'{"type":"hello","type":"end"}', b'{"type":"hello","sample_rate":24000,"extra":1}',
    json.dumps({"type": "hello", "sample_rate": RATE, **{f"k{i}": i for i in range(12_000)}}).encode(),
    b'{"type":"hello","sample_rate":24000,"options":{"mode":"windowed","lookahead_frames":511,"context_frames":511,"block_frames":512}}',
]


def fuzz_hello(rng: random.Random) -> tuple[bytes, str]:
    """A hostile hello payload (kind byte included) and the session kind its base asked for."""
    roll = rng.random()
    if roll < 0.15:
        return bytes([Kind.CONTROL]) + rng.choice(STRUCTURAL), "encodec"
    fields = dict(HELLO_FIELDS)
    base = "encodec"
    if rng.random() < 0.35:
        fields.update(model='"snac-24khz"', direction='"codes->audio"')
        base = "snac"
    if rng.random() < 0.5:
        fields["format"] = '"f32"'
    if roll < 0.55:  # top-level fields
        for name in rng.sample(sorted(HELLO_FIELDS), rng.randint(1, 2)):
            pool = GOOD_FIELD_VALUES.get(name, []) if rng.random() < 0.3 else []
            fields[name] = rng.choice(pool or BAD_VALUES)
        if rng.random() < 0.1:
            del fields[rng.choice(sorted(fields))]
    else:  # options values
        options = {}
        if rng.random() < 0.4:
            options["mode"] = '"windowed"'
            for name in rng.sample(FRAME_OPTIONS, rng.randint(1, 4)):
                options[name] = str(rng.choice([0, 1, 2, 4, 16, 255, 511, 512, 513, rng.randint(0, 600)]))
        for name in rng.sample(OPTION_NAMES, rng.randint(1, 3)):
            pool = GOOD_OPTION_VALUES.get(name, [])
            options[name] = rng.choice(pool) if pool and rng.random() < 0.5 else rng.choice(BAD_VALUES)
        fields["options"] = "{" + ",".join(f'"{key}":{value}' for key, value in options.items()) + "}"
    body = '{"type":"hello",' + ",".join(f'"{key}":{value}' for key, value in fields.items()) + "}"
    return bytes([Kind.CONTROL]) + body.encode(), base


# -- fuzz connections -------------------------------------------------------------------------
class FuzzConnection:
    """A websockets client connection whose replies are read (and ERROR codes counted) by a
    task of its own; ``send`` counts each frame and says False once the connection closed."""

    def __init__(self, ws: Any, tally: Tally, kind: str) -> None:
        self.ws, self.tally, self.kind = ws, tally, kind
        self.ready = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self.tally.codes["<text message from the server>"] += 1
                elif message[:1] == bytes([Kind.ERROR]):
                    self.tally.record_error(message[1:])
                elif message[:1] == bytes([Kind.CONTROL]) and b'"ready"' in message[:24]:
                    self.ready.set()
        except ConnectionClosed:
            pass

    @property
    def open(self) -> bool:
        return not self.reader.done()

    async def send(self, frame: bytes | str) -> bool:
        from websockets.exceptions import ConnectionClosed

        if not self.open:
            return False
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            return False
        self.tally.frames += 1
        self.tally.frames_by_kind[self.kind] += 1
        return True

    async def got_ready(self, timeout: float = 3.0) -> bool:
        """Wait for the server's first answer: True for ready, False for an error or a close."""
        ready = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait({ready, self.reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        return self.ready.is_set()


async def fuzz_connection(url: str, tally: Tally, kind: str, body: Callable[[FuzzConnection], Awaitable[None]]) -> None:
    """Open a connection, run ``body`` on it, close it; record the close code the server sent."""
    from websockets.asyncio.client import connect

    # close_timeout: a server that hit an error while frames were still queued cannot read our
    # close reply (websockets stops reading with 4 messages waiting) and waits 2 s before it
    # aborts; the fuzzer does not wait for that.
    async with connect(url, max_size=1 << 22, open_timeout=10, close_timeout=0.5, ping_interval=None) as ws:
        tally.connections += 1
        tally.connections_by_kind[kind] += 1
        connection = FuzzConnection(ws, tally, kind)
        try:
            await body(connection)
        finally:
            await asyncio.wait_for(ws.close(), 5)
            await asyncio.wait_for(connection.reader, 5)
        tally.close_codes[ws.close_code] += 1


async def stream_mutated_data(connection: FuzzConnection, rng: random.Random, session: str, fmt: str, pacer: Pacer | None,
                              max_frames: int, hostile_rate: float = 0.04) -> None:
    """Bursts of data frames (mostly valid, sample bytes flipped; a few hostile mutations),
    while the connection stays open."""
    protocol = _format(Protocol(), fmt)
    sent = 0
    while sent < max_frames and connection.open:
        for _ in range(rng.randint(8, 24)):
            frame = tiny_audio(rng, protocol) if session == "encodec" else small_codes(rng, protocol)
            roll = rng.random()
            if roll < hostile_rate:
                frame = hostile(rng, frame)
            elif roll < hostile_rate + 0.005:  # a control message in the middle of a session
                frame = hostile(rng, rng.choice([Protocol.end(), encodec_hello(fmt), Protocol.stats({})]))
            else:
                frame = benign(rng, frame)
            if not await connection.send(frame):
                return
            sent += 1
        await (pacer.wait(connection.tally.frames) if pacer else asyncio.sleep(0.005))
    if connection.open and rng.random() < 0.2:  # end some sessions properly
        await connection.send(Protocol.end())
        await asyncio.wait({connection.reader}, timeout=3)


async def fuzz_first_frame(url: str, rng: random.Random, tally: Tally, pacer: Pacer | None) -> None:
    """(a) A mutated valid frame of any kind as the first message, then a few more mutations."""

    async def body(connection: FuzzConnection) -> None:
        frame = any_valid_frame(rng)
        for _ in range(rng.randint(1, 2)):
            frame = hostile(rng, frame) if isinstance(frame, bytes) else frame
        await connection.send(frame)
        for _ in range(rng.randint(0, 3)):
            if not await connection.send(hostile(rng, any_valid_frame(rng))):
                break
            await asyncio.sleep(0.002)
        await asyncio.wait({connection.reader}, timeout=0.3)

    await fuzz_connection(url, tally, "a:first-frame", body)


async def fuzz_hello_json(url: str, rng: random.Random, tally: Tally, pacer: Pacer | None) -> None:
    """(b) A hostile hello; when the server accepts it anyway, a few data frames and an end."""

    async def body(connection: FuzzConnection) -> None:
        frame, session = fuzz_hello(rng)
        await connection.send(frame)
        if await connection.got_ready():
            fmt = "f32" if b'"format":"f32"' in frame else "pcm16"
            await stream_mutated_data(connection, rng, session, fmt, None, max_frames=rng.randint(1, 6), hostile_rate=0.0)

    await fuzz_connection(url, tally, "b:hello-json", body)


async def fuzz_session(url: str, rng: random.Random, tally: Tally, pacer: Pacer | None, session: str) -> None:
    """(c) A valid hello, then a long stream of mutated data frames."""

    async def body(connection: FuzzConnection) -> None:
        fmt = rng.choice(["pcm16", "f32"])
        await connection.send(encodec_hello(fmt) if session == "encodec" else snac_hello(fmt))
        if await connection.got_ready():
            limit = rng.randint(40, 160) if session == "encodec" else rng.randint(5, 20)
            await stream_mutated_data(connection, rng, session, fmt, pacer, max_frames=limit, hostile_rate=0.02)

    await fuzz_connection(url, tally, f"c:{session}-session", body)


FUZZERS: dict[str, tuple[float, Callable[..., Awaitable[None]]]] = {
    "a": (0.2, fuzz_first_frame),
    "b": (0.27, fuzz_hello_json),
    "c-encodec": (0.45, lambda url, rng, tally, pacer: fuzz_session(url, rng, tally, pacer, "encodec")),
    "c-snac": (0.08, lambda url, rng, tally, pacer: fuzz_session(url, rng, tally, pacer, "snac")),
}


async def fuzz_round(url: str, rng: random.Random, tally: Tally) -> None:
    """One connection of each fuzz kind (the warm-up)."""
    for _, fuzzer in FUZZERS.values():
        await asyncio.wait_for(fuzzer(url, rng, tally, None), 20)


async def fuzz_worker(url: str, rng: random.Random, tally: Tally, pacer: Pacer) -> None:
    names = list(FUZZERS)
    weights = [FUZZERS[name][0] for name in names]
    while tally.frames < FUZZ_FRAMES:
        _, fuzzer = FUZZERS[rng.choices(names, weights)[0]]
        await asyncio.wait_for(fuzzer(url, rng, tally, pacer), 30)


# -- raw sockets: abandoned connections and a client that never reads -------------------------
def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One masked (client-to-server) WebSocket frame."""
    n = len(payload)
    header = bytes([0x80 | opcode])
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack(">Q", n)
    key = os.urandom(4)
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(key, np.uint8), n)
    return header + key + data.tobytes()


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the complete unmasked frames in ``data``."""
    frames, offset = [], 0
    while offset + 2 <= len(data):
        opcode, n = data[offset] & 0x0F, data[offset + 1] & 0x7F
        offset += 2
        if n == 126:
            (n,) = struct.unpack_from(">H", data, offset)
            offset += 2
        elif n == 127:
            (n,) = struct.unpack_from(">Q", data, offset)
            offset += 8
        if offset + n > len(data):
            break
        frames.append((opcode, data[offset : offset + n]))
        offset += n
    return frames


async def raw_connect(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def raw_handshake(sock: socket.socket, port: int) -> bytes:
    """The WebSocket opening handshake; returns what followed the response headers."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, upgrade_request(port))
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
        assert chunk, f"the server closed during the handshake: {response!r}"
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return rest


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@dataclass
class Abandoned:
    kind: str
    opened: float
    closed: float | None = None
    codes: list[str] = field(default_factory=list)


async def abandoned_connection(port: int, kind: str, tally: Tally) -> Abandoned:
    """Open a connection that never sends a hello, and read until the server closes it."""
    loop = asyncio.get_running_loop()
    sock = await raw_connect(port)
    record = Abandoned(kind, time.monotonic())
    received = b""
    try:
        if kind == "half-http":
            await loop.sock_sendall(sock, upgrade_request(port)[:40])
        elif kind in ("no-hello", "half-frame"):
            received = await raw_handshake(sock, port)
            if kind == "half-frame":
                frame = client_frame(encodec_hello("f32"))
                await loop.sock_sendall(sock, frame[: len(frame) // 2])
        while True:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 15)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            received += chunk
        record.closed = time.monotonic()
    except asyncio.TimeoutError:
        pass  # never closed: the assertion below reports it
    finally:
        sock.close()
    for opcode, payload in server_frames(received):
        if opcode == 0x2 and payload[:1] == bytes([Kind.ERROR]):
            record.codes.append(tally.record_error(payload[1:]))
    return record


async def abandoned_connections(port: int, tally: Tally) -> list[Abandoned]:
    kinds = ["silent-tcp", "half-http", "no-hello", "half-frame"]
    return list(await asyncio.gather(*(abandoned_connection(port, kinds[i % len(kinds)], tally) for i in range(ABANDONED))))


@dataclass
class NeverReader:
    messages_sent: int = 0
    hello_at: float = 0.0
    closed_at: float | None = None
    state: int = TCP_ESTABLISHED


# The kernel lets a loopback sender queue about 3 MB before its send() blocks (that is when the
# server's send timeout starts counting). At 24 kHz mono f32 that is 30 s of computed audio; at
# 192 kHz stereo f32 each computed second is 1.5 MB of output, so the server blocks after 2 s.
NEVER_READER_RATE, NEVER_READER_CHANNELS = 192000, 2
NEVER_READER_WAIT_S = SEND_TIMEOUT_S + 12  # how long the client watches for the server's close


def high_rate(signal_: np.ndarray) -> np.ndarray:
    """``signal_`` (24 kHz mono) at the never-reading client's rate and channels."""
    return np.repeat(np.repeat(signal_, NEVER_READER_RATE // RATE)[:, None], NEVER_READER_CHANNELS, axis=1)


async def high_rate_session(url: str, signal_: np.ndarray) -> None:
    """A well-behaved client in the never-reading client's format (it reads everything)."""
    result = await stream_audio(
        url, high_rate(signal_), NEVER_READER_RATE, model="encodec-24khz", direction="audio->audio", chunk_ms=100, audio_format="f32",
    )
    assert len(result.audio) == len(signal_) * NEVER_READER_RATE // RATE


async def never_reading_client(port: int, signal_: np.ndarray) -> NeverReader:
    """An encodec-24khz audio->audio f32 session that sends 0.1 s messages until the server stops
    taking them (its inbox is full and TCP pushes back) and never reads a byte after the
    handshake; then watch its TCP state until the server tears the connection down."""
    loop = asyncio.get_running_loop()
    sock = await raw_connect(port, rcvbuf=4096)
    out = NeverReader()
    hello = Hello(model="encodec-24khz", direction="audio->audio", sample_rate=NEVER_READER_RATE, channels=NEVER_READER_CHANNELS, format="f32")
    protocol = Protocol()
    try:
        await raw_handshake(sock, port)
        await loop.sock_sendall(sock, client_frame(protocol.hello(hello)))
        out.hello_at = time.monotonic()
        step = NEVER_READER_RATE // 10
        stereo = high_rate(signal_)
        for index in range(400):  # 400 x 0.1 s (150 kB each): far more than the server buffers
            start = (index * step) % (len(stereo) - step)
            frame = client_frame(protocol.audio(stereo[start : start + step]))
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, frame), 1.0)
            except (asyncio.TimeoutError, ConnectionError):
                break  # the server stopped reading (or already dropped us)
            out.messages_sent += 1
        deadline = out.hello_at + NEVER_READER_WAIT_S
        while time.monotonic() < deadline:
            out.state = tcp_state(sock)
            if out.state != TCP_ESTABLISHED:  # reset (CLOSE) or FIN (CLOSE_WAIT) from the server
                out.closed_at = time.monotonic()
                break
            await asyncio.sleep(0.05)
    finally:
        sock.close()
    return out


# -- size limits --------------------------------------------------------------------------------
async def exchange(url: str, *messages: bytes, tally: Tally, **connect_args: Any) -> tuple[list[str], int | None]:
    """Send ``messages`` (after the hello answer for the first), read until the server closes;
    return the ERROR codes and the close code."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    codes = []
    async with connect(url, max_size=None, open_timeout=10, ping_interval=None, **connect_args) as ws:
        try:
            for message in messages:
                await ws.send(message)
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                if message[:1] == bytes([Kind.ERROR]):
                    codes.append(tally.record_error(message[1:]))
        except ConnectionClosed:
            pass
        return codes, ws.close_code


async def size_limits(url: str, tally: Tally) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    f32 = _format(Protocol(), "f32")
    pcm = _format(Protocol(), "pcm16")
    snac = Protocol()
    results: dict[str, Any] = {}
    over = b"\x03" + struct.pack("<I", 0) + b"\x00" * (MAX_MESSAGE_BYTES - 4)  # one byte over the limit
    assert len(over) == MAX_MESSAGE_BYTES + 1
    results["bytes"] = await exchange(url, encodec_hello("f32"), over, tally=tally)
    # Under the byte limit, over max_message_ms (1 s): 65,534 f32 samples (2.7 s, 262,141 bytes)...
    results["f32 2.7 s"] = await exchange(url, encodec_hello("f32"), f32.audio(np.zeros((65534, 1), np.float32)), tally=tally)
    # ...1.5 s of PCM16 (72 kB)...
    results["pcm16 1.5 s"] = await exchange(url, encodec_hello("pcm16"), pcm.audio(np.zeros((36000, 1), np.float32)), tally=tally)
    # ...and 1.024 s of SNAC codes (48 finest frames; at most 47 fit in 1 s at 46.875 Hz).
    levels = [np.zeros((1, n), np.int32) for n in (12, 24, 48)]
    results["snac 1.024 s"] = await exchange(url, snac_hello("pcm16"), snac.codes(levels), tally=tally)
    async with connect(url, compression="deflate", open_timeout=10) as ws:
        results["extensions"] = (ws.response.headers.get("Sec-WebSocket-Extensions"), list(ws.protocol.extensions))
    return results


# -- the honest session -------------------------------------------------------------------------
def speechlike(seconds: float, seed: int) -> np.ndarray:
    return signals.speech_like(seconds, RATE, 1, seed=seed)[0, 0].numpy()


def offline_roundtrip(audio: np.ndarray) -> np.ndarray:
    model = cs.load("encodec-24khz", weights="random")  # seeded: the server's weights exactly
    with torch.inference_mode():
        return model.decode(model.encode(torch.from_numpy(audio)[None, None]))[0, 0].numpy()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return False


# -- the scenario -------------------------------------------------------------------------------
@dataclass
class Outcome:
    honest: Any = None
    tally: Tally = field(default_factory=Tally)
    rss_before: float = 0.0
    rss_after: float = 0.0
    limits: dict[str, Any] = field(default_factory=dict)
    abandoned: list[Abandoned] = field(default_factory=list)
    never_reader: NeverReader | None = None
    metrics_end: dict[str, Any] = field(default_factory=dict)
    pending_peak: int = 0  # pending_connections while the abandoned connections wait
    fuzz_seconds: float = 0.0
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)  # server: on a CPU, waiting for one, wall time


async def scenario(server: ServerProcess, honest_signal: np.ndarray) -> Outcome:
    out = Outcome()
    tally = out.tally

    async def metrics() -> dict[str, Any]:
        return await asyncio.to_thread(server.metrics)

    # Warm-up, so that the RSS baseline counts what stays, not the allocator's first growth: a
    # well-behaved session in the never-reading client's format (before the honest session, which
    # it would only delay), then the honest session's first messages and every fuzz kind once.
    await high_rate_session(server.url, speechlike(2, seed=5))
    audio_before = (await metrics())["audio_seconds"]
    honest = asyncio.create_task(stream_audio(
        server.url, honest_signal, RATE, model="encodec-24khz", direction="audio->audio", chunk_ms=20, realtime=True,
        audio_format="f32",
    ))

    async def flowing() -> bool:
        return honest.done() or (await metrics())["audio_seconds"] - audio_before >= 0.5

    assert await wait_until(flowing, 10), "the honest session never started"
    await fuzz_round(server.url, random.Random(SEED), tally)
    out.rss_before = server.rss_mb()
    cpu_before = server.cpu_seconds()

    started = time.monotonic()
    pacer = Pacer(FUZZ_FRAMES, FUZZ_SECONDS)
    workers = [fuzz_worker(server.url, random.Random(SEED + 1 + i), tally, pacer) for i in range(FUZZ_CONCURRENCY)]
    fuzz = asyncio.gather(*workers)
    limits = asyncio.ensure_future(size_limits(server.url, tally))
    abandoned = asyncio.ensure_future(abandoned_connections(server.port, tally))
    never = asyncio.ensure_future(never_reading_client(server.port, speechlike(1, seed=7)))

    async def all_pending() -> bool:
        out.pending_peak = max(out.pending_peak, (await metrics())["pending_connections"])
        return out.pending_peak >= ABANDONED // 2

    await wait_until(all_pending, HELLO_TIMEOUT_S * 0.9)  # before the hello timeout frees them
    await fuzz
    out.fuzz_seconds = time.monotonic() - started
    out.limits, out.abandoned, out.never_reader = await limits, await abandoned, await never
    out.honest = await honest

    async def settled() -> bool:
        out.metrics_end = await metrics()
        return out.metrics_end["pending_connections"] == 0 and out.metrics_end["sessions"] == 0

    await wait_until(settled, 5)
    out.rss_after = server.rss_mb()
    cpu_after = server.cpu_seconds()
    out.cpu = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1], time.monotonic() - started)
    return out


def test_server_survives_adversaries_next_to_an_honest_session(server):
    process, stderr_path = server
    honest_signal = speechlike(HONEST_SECONDS, seed=11)
    expected = offline_roundtrip(honest_signal)  # while the server loads its models
    served = ServerProcess(process, read_port(process, stderr_path), stderr_path)
    started = time.monotonic()
    out = asyncio.run(asyncio.wait_for(scenario(served, honest_signal), 50))
    scenario_s = time.monotonic() - started
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(timeout=30)
    report(out, scenario_s)

    # Every property is checked, and every one that fails is reported together.
    failures: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    # 1. The honest session: exact, and never stalled.
    audio = out.honest.audio[:, 0]
    check(len(audio) == len(honest_signal), f"honest session: {len(audio)} samples back for {len(honest_signal)}")
    error = float(np.abs(audio[: len(honest_signal)] - expected[: len(audio)]).max()) if len(audio) else float("inf")
    check(error <= 1e-4, f"honest session: max abs error {error:.2e} against the offline roundtrip")
    check(max_gap(out.honest) < MAX_GAP_S, f"honest session stalled: worst gaps {worst_gaps(out.honest)} (limit {MAX_GAP_S * 1000:.0f} ms)")

    # 2. Fuzzing: enough frames, and only documented codes (never "internal").
    tally = out.tally
    check(tally.frames >= FUZZ_FRAMES, f"only {tally.frames} fuzz frames sent")
    check("internal" not in tally.codes, f"internal errors: {dict(tally.codes)}")
    check(set(tally.codes) <= set(ERROR_CODES), f"undocumented error codes: {sorted(set(tally.codes) - set(ERROR_CODES))}")
    check(1011 not in tally.close_codes, f"a handler crashed (close code 1011): {dict(tally.close_codes)}")

    # 3. Size limits.
    limits = out.limits
    check(limits["bytes"][1] == 1009, f"one byte over max_message_bytes: {limits['bytes']}, expected close code 1009")
    for case in ("f32 2.7 s", "pcm16 1.5 s", "snac 1.024 s"):
        check(limits[case] == (["too_large"], 1008), f"{case} in one message: {limits[case]}, expected too_large")
    check(limits["extensions"] == (None, []), f"permessage-deflate was negotiated: {limits['extensions']}")

    # 4. Abandoned connections: closed by the server after the hello timeout, none left pending.
    check(out.pending_peak >= ABANDONED // 2, f"pending_connections peaked at {out.pending_peak} with {ABANDONED // 2} waiting for a hello")
    for record in out.abandoned:
        if record.closed is None:
            failures.append(f"abandoned {record.kind} connection never closed by the server")
            continue
        lifetime = record.closed - record.opened
        busy = "server_busy" in record.codes
        check(lifetime < 10.0, f"abandoned {record.kind} connection closed only after {lifetime:.1f} s")
        check(busy or lifetime >= HELLO_TIMEOUT_S * 0.75, f"abandoned {record.kind} connection closed early, after {lifetime:.2f} s")
        if record.kind in ("no-hello", "half-frame"):
            check(record.codes in (["hello_timeout"], ["server_busy"]), f"abandoned {record.kind} connection got {record.codes}")
    check(out.metrics_end.get("pending_connections") == 0, f"pending_connections at the end: {out.metrics_end.get('pending_connections')}")
    check(out.metrics_end.get("sessions") == 0, f"sessions at the end: {out.metrics_end.get('sessions')}")

    # 5. The client that never reads: torn down by the send timeout, not the idle timeout.
    never = out.never_reader
    if never.closed_at is None:
        failures.append(f"the never-reading client is still connected (TCP state {never.state}) {NEVER_READER_WAIT_S:.0f} s after its hello")
    else:
        lifetime = never.closed_at - never.hello_at
        check(SEND_TIMEOUT_S - 0.5 <= lifetime <= SEND_TIMEOUT_S + 10, f"the never-reading client was dropped {lifetime:.1f} s after its hello")
    idle = out.metrics_end.get("errors", {}).get("idle_timeout", 0)
    check(idle == 0, f"{idle} idle timeouts: the never-reading client must be dropped by the send timeout")

    # 6. Memory, the server's log and its exit.
    growth = out.rss_after - out.rss_before
    check(growth < MAX_RSS_GROWTH_MB, f"server RSS grew by {growth:.1f} MB")
    log = served.stderr()
    check("internal error" not in log and "connection handler failed" not in log, f"server log: {log[-3000:]}")
    check(exit_code == 0, f"the server exited with {exit_code} after SIGTERM: {log[-2000:]}")
    assert not failures, "\n".join(failures)


def max_gap(result: Any) -> float:
    arrivals = [at for at, _ in result.received_at]
    return float(np.diff(arrivals).max()) if len(arrivals) > 1 else 0.0


def worst_gaps(result: Any, count: int = 3) -> str:
    """The longest gaps, each with when it began (s after the first message)."""
    arrivals = np.array([at for at, _ in result.received_at])
    if len(arrivals) < 2:
        return "-"
    gaps = np.diff(arrivals)
    worst = np.argsort(gaps)[::-1][:count]
    return ", ".join(f"{gaps[i] * 1000:.0f} ms at {arrivals[i] - arrivals[0]:.1f} s" for i in worst)


def report(out: Outcome, seconds: float) -> None:
    tally = out.tally
    never = out.never_reader
    abandoned_s = [record.closed - record.opened for record in out.abandoned if record.closed is not None]
    abandoned_codes = collections.Counter(code for record in out.abandoned for code in record.codes)
    print(
        f"\nadversarial run: {seconds:.1f} s (fuzzing {out.fuzz_seconds:.1f} s)"
        f"\n  fuzz: {tally.frames} frames over {tally.connections} connections"
        f"\n    frames by kind {dict(tally.frames_by_kind)}"
        f"\n    connections by kind {dict(tally.connections_by_kind)}"
        f"\n  error codes received: {dict(tally.codes.most_common())}"
        f"\n  close codes (fuzz): {dict(tally.close_codes.most_common())}"
        f"\n  size limits: {out.limits}"
        f"\n  abandoned: pending_connections peaked at {out.pending_peak}; {len(abandoned_s)}/{len(out.abandoned)} closed by the server, after "
        f"{min(abandoned_s, default=0):.2f}-{max(abandoned_s, default=0):.2f} s; codes {dict(abandoned_codes)}"
        f"\n  never-reading client: {never.messages_sent} x 0.1 s at 192 kHz stereo sent, closed "
        f"{(never.closed_at - never.hello_at) if never.closed_at else float('nan'):.2f} s after its hello (TCP state {never.state})"
        f"\n  honest session: {len(out.honest.received_at)} messages, worst gaps {worst_gaps(out.honest)}"
        f"\n  server CPU over the last {out.cpu[2]:.1f} s: {out.cpu[0]:.1f} s running, {out.cpu[1]:.1f} s runnable but "
        f"waiting for a CPU (machine load {os.getloadavg()[0]:.1f})"
        f"\n  server RSS: {out.rss_before:.1f} MB after warm-up, {out.rss_after:.1f} MB at the end "
        f"({out.rss_after - out.rss_before:+.1f} MB)"
        f"\n  metrics at the end: pending {out.metrics_end.get('pending_connections')}, sessions "
        f"{out.metrics_end.get('sessions')}, total {out.metrics_end.get('sessions_total')}, errors {out.metrics_end.get('errors')}"
    )
