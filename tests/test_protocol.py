"""The WebSocket protocol on exact bytes, including every error path."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from codecstream.server.protocol import Audio, Codes, End, ErrorMessage, Hello, Protocol, ProtocolError, Ready, Stats

HELLO = {"type": "hello", "version": 1, "model": "snac-24khz", "direction": "audio->audio", "sample_rate": 24000, "channels": 1, "format": "pcm16", "options": {}}


def control(payload) -> bytes:
    return b"\x01" + json.dumps(payload).encode()


def test_hello_bytes_round_trip():
    client, server = Protocol(), Protocol()
    message = client.hello(Hello(model="snac-24khz", direction="audio->audio", sample_rate=24000))
    assert message == b"\x01" + b'{"type":"hello","version":1,"model":"snac-24khz","direction":"audio->audio","sample_rate":24000,"channels":1,"format":"pcm16","options":{}}'
    assert server.receive(message) == Hello(model="snac-24khz", direction="audio->audio", sample_rate=24000)


def test_pcm16_audio_exact_bytes():
    sender, receiver = Protocol(), Protocol()
    samples = np.array([[0.0], [0.5], [-1.0], [1.0]], np.float32)
    message = sender.audio(samples)
    assert message == b"\x02" + struct.pack("<I", 0) + struct.pack("<4h", 0, 16384, -32767, 32767)
    event = receiver.receive(message)
    assert isinstance(event, Audio) and event.sequence == 0
    assert np.allclose(event.samples[:, 0], [0, 16384 / 32768, -32767 / 32768, 32767 / 32768])
    assert sender.audio(samples)[1:5] == struct.pack("<I", 1)  # sequence numbers count up


def test_float32_stereo_audio():
    sender, receiver = Protocol(), Protocol()
    receiver.receive(control(dict(HELLO, channels=2, format="f32")))
    sender.format, sender.channels = "f32", 2
    samples = np.array([[0.25, -0.25], [0.125, 1.5]], np.float32)
    message = sender.audio(samples)
    assert message == b"\x03" + struct.pack("<I", 0) + struct.pack("<4f", 0.25, -0.25, 0.125, 1.5)
    assert np.array_equal(receiver.receive(message).samples, samples)


def test_codes_exact_bytes_multi_level():
    sender, receiver = Protocol(), Protocol()
    levels = [np.array([[7, 4095]], np.int64), np.array([[1, 2, 3, 4]], np.int64)]
    message = sender.codes(levels)
    expected = b"\x04" + struct.pack("<I", 0) + bytes([0, 2]) + struct.pack("<HI", 1, 2) + struct.pack("<HI", 1, 4)
    expected += struct.pack("<2i", 7, 4095) + struct.pack("<4i", 1, 2, 3, 4)
    assert message == expected
    event = receiver.receive(message)
    assert isinstance(event, Codes) and [level.tolist() for level in event.levels] == [[[7, 4095]], [[1, 2, 3, 4]]]
    features = sender.codes([np.array([[0.5], [1.5]], np.float32)])
    assert features[5] == 1 and receiver.receive(features).levels[0].dtype == np.float32


def test_control_messages():
    protocol = Protocol()
    assert Protocol.end() == b'\x01{"type":"end"}'
    assert isinstance(protocol.receive(Protocol.end()), End)
    ready = Ready(model="m", direction="audio->audio", sample_rate=24000, model_sample_rate=24000, frame_rate=75.0, latency_ms=13.3)
    assert protocol.receive(Protocol.ready(ready)) == ready
    assert protocol.receive(Protocol.stats({"a": 1})) == Stats(values={"a": 1})
    assert Protocol.error("bad_codes", "x") == b'\x05{"code": "bad_codes", "message": "x"}'
    assert protocol.receive(Protocol.error("bad_codes", "x")) == ErrorMessage("bad_codes", "x")


@pytest.mark.parametrize(
    "message, code",
    [
        (b"", "empty"),
        (b"\x09whatever", "unknown_kind"),
        ("text", "unknown_kind"),
        (b"\x01{not json", "bad_json"),
        (b"\x01\xff\xfe", "bad_json"),
        (b"\x01[1, 2]", "bad_json"),
        (control({"type": "dance"}), "bad_control"),
        (control(dict(HELLO, version=2)), "unsupported_version"),
        (control(dict(HELLO, direction="up")), "bad_hello"),
        (control(dict(HELLO, format="mp3")), "bad_hello"),
        (control(dict(HELLO, sample_rate=0)), "bad_hello"),
        (control(dict(HELLO, sample_rate=10**9)), "bad_hello"),
        (control(dict(HELLO, sample_rate="24000")), "bad_hello"),
        (control(dict(HELLO, channels=3)), "bad_hello"),
        (control(dict(HELLO, model=5)), "bad_hello"),
        (control(dict(HELLO, options=[])), "bad_hello"),
        (control(dict(HELLO, extra=1)), "bad_hello"),
        (control({"type": "ready", "model": "m"}), "bad_control"),
        (b"\x02\x00\x00", "bad_audio"),
        (b"\x02" + struct.pack("<I", 0) + b"\x00", "bad_audio"),
        (b"\x03" + struct.pack("<I", 0) + struct.pack("<f", float("nan")), "bad_audio"),
        (b"\x02" + struct.pack("<I", 5) + b"\x00\x00", "sequence"),
        (b"\x04" + struct.pack("<I", 0) + bytes([2, 1]), "bad_codes"),
        (b"\x04" + struct.pack("<I", 0) + bytes([0, 0]), "bad_codes"),
        (b"\x04" + struct.pack("<I", 0) + bytes([0, 1]) + b"\x01", "bad_codes"),
        (b"\x04" + struct.pack("<I", 0) + bytes([0, 1]) + struct.pack("<HI", 2, 2) + b"\x00" * 12, "bad_codes"),
    ],
)
def test_every_error_path(message, code):
    with pytest.raises(ProtocolError) as info:
        Protocol().receive(message)
    assert info.value.code == code


def test_size_limit_and_reordering():
    with pytest.raises(ProtocolError) as info:
        Protocol(max_message_bytes=10).receive(b"\x02" + b"\x00" * 20)
    assert info.value.code == "too_large"
    sender, receiver = Protocol(), Protocol()
    first, second = sender.audio(np.zeros((2, 1), np.float32)), sender.audio(np.zeros((2, 1), np.float32))
    with pytest.raises(ProtocolError, match="expected data message 0, got 1"):
        receiver.receive(second)
    receiver.receive(first)
    receiver.receive(second)
