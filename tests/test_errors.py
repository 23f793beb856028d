"""Bad input raises the documented error, with a message that says what to do."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

import codecstream as cs


@pytest.fixture(scope="module")
def model():
    return cs.load("encodec-24khz", weights="random")


def test_error_hierarchy_matches_builtins():
    assert issubclass(cs.InputError, ValueError)
    assert issubclass(cs.DTypeError, TypeError) and issubclass(cs.DTypeError, cs.InputError)
    assert issubclass(cs.UnknownModelError, KeyError)
    for name in ("ShapeError", "ChannelError", "SampleRateError", "NonFiniteError", "CodeRangeError", "OptionError"):
        assert issubclass(getattr(cs, name), cs.InputError)
    for name in ("CorruptCheckpointError", "CheckpointMismatchError", "WeightsUnavailableError"):
        assert issubclass(getattr(cs, name), cs.CheckpointError)
    assert issubclass(cs.CheckpointError, cs.CodecStreamError)


@pytest.mark.parametrize(
    "audio, error, message",
    [
        (torch.zeros(100), cs.ShapeError, r"\[batch, channels, samples\].*audio\[None, None\]"),
        (torch.zeros(1, 100), cs.ShapeError, "got shape"),
        (torch.zeros(1, 2, 100), cs.ChannelError, "1-channel audio, got 2"),
        (torch.zeros(1, 1, 100, dtype=torch.int16), cs.DTypeError, "32768"),
        (torch.zeros(1, 1, 100, dtype=torch.complex64), cs.DTypeError, "real floating-point"),
        (torch.tensor([[[0.0, float("nan")]]]), cs.NonFiniteError, "NaN"),
        (torch.tensor([[[0.0, float("inf")]]]), cs.NonFiniteError, "infinite"),
        ([[[0.0, 1.0]]], cs.DTypeError, "torch.Tensor or numpy.ndarray"),
    ],
)
def test_bad_audio(model, audio, error, message):
    with pytest.raises(error, match=message):
        model.encode(audio)
    stream = model.encoder_stream()
    with pytest.raises(error):
        stream.push(audio)


def test_numpy_audio_is_accepted(model):
    audio = np.zeros((1, 1, 640), dtype=np.float32)
    assert model.encode(audio, bandwidth=1.5).shape == (1, 2, 2)


def test_wrong_sample_rate_and_batch(model):
    with pytest.raises(cs.SampleRateError, match="16000 Hz but the model runs at 24000 Hz.*soxr"):
        model.encode(torch.zeros(1, 1, 100), sample_rate=16000)
    with pytest.raises(cs.SampleRateError):
        model.encoder_stream(sample_rate=44100)
    stream = model.encoder_stream(2)
    with pytest.raises(cs.ShapeError, match="batch size 2, got 1"):
        stream.push(torch.zeros(1, 1, 10))


@pytest.mark.parametrize(
    "codes, error, message",
    [
        (torch.full((1, 8, 3), 1024), cs.CodeRangeError, r"\[0, 1024\).*1024"),
        (torch.full((1, 8, 3), -1), cs.CodeRangeError, "from -1"),
        (torch.zeros(1, 8, 3, dtype=torch.float32), cs.DTypeError, "integer"),
        (torch.zeros(8, 3, dtype=torch.long), cs.ShapeError, r"\[batch, codebooks, frames\]"),
        (torch.zeros(1, 33, 3, dtype=torch.long), cs.ShapeError, "1 to 32"),
        (torch.zeros(1, 0, 3, dtype=torch.long), cs.ShapeError, "1 to 32"),
    ],
)
def test_bad_codes(model, codes, error, message):
    with pytest.raises(error, match=message):
        model.decode(codes)


def test_stream_misuse(model):
    stream = model.decoder_stream()
    stream.push(torch.zeros(1, 8, 2, dtype=torch.long))
    with pytest.raises(cs.StreamStateError, match="layout changed"):
        stream.push(torch.zeros(1, 4, 2, dtype=torch.long))
    stream.flush()
    with pytest.raises(cs.StreamStateError, match="after flush"):
        stream.push(torch.zeros(1, 8, 1, dtype=torch.long))
    stream.reset()
    assert stream.push(torch.zeros(1, 4, 8, dtype=torch.long)).shape[-1] == 8 * 320
    with model.encoder_stream() as encoder:
        encoder.push(torch.zeros(1, 1, 10))
    with pytest.raises(cs.StreamStateError, match="closed"):
        encoder.push(torch.zeros(1, 1, 10))
    with pytest.raises(cs.StreamStateError, match="batch_size"):
        model.encoder_stream(0)


def test_unknown_model():
    with pytest.raises(cs.UnknownModelError, match="unknown model 'encodec-99khz'.*encodec-24khz") as info:
        cs.load("encodec-99khz")
    assert isinstance(info.value, KeyError)


def test_bad_options():
    with pytest.raises(cs.OptionError, match="dtype"):
        cs.load("encodec-24khz", weights="random", dtype=torch.int32)
    model = cs.load("encodec-24khz", weights="random")
    with pytest.raises(cs.OptionError, match=r"unknown option\(s\) \['quality'\]; it accepts \['bandwidth'\]"):
        model.encoder_stream(quality=3)
    with pytest.raises(cs.OptionError, match="takes no decoder options"):
        model.decoder_stream(bandwidth=3)


def test_missing_and_corrupt_checkpoints(tmp_path, model):
    with pytest.raises(cs.WeightsUnavailableError, match="no such file"):
        cs.load("encodec-24khz", weights=str(tmp_path / "nothing.th"))

    good = tmp_path / "good.th"
    torch.save(model.state_dict(), good)
    truncated = tmp_path / "truncated.th"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(cs.CorruptCheckpointError, match="truncated or corrupt"):
        cs.load("encodec-24khz", weights=truncated)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(cs.CorruptCheckpointError):
        cs.load("encodec-24khz", weights=garbage)

    class Payload:  # a pickle that would run code when loaded without weights_only
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.th"
    buffer = io.BytesIO()
    pickle.dump({"x": Payload()}, buffer)
    evil.write_bytes(buffer.getvalue())
    with pytest.raises(cs.CorruptCheckpointError, match="refuses to run"):
        cs.load("encodec-24khz", weights=evil)

    bad_sum = tmp_path / "encodec_24khz-00000000.th"
    bad_sum.write_bytes(good.read_bytes())
    with pytest.raises(cs.CorruptCheckpointError, match="checksum"):
        cs.load("encodec-24khz", weights=bad_sum)


def test_wrong_checkpoint_lists_what_does_not_fit(tmp_path, model):
    state = dict(model.state_dict())
    del state["decoder.0.weight"]
    state["decoder.99.weight"] = torch.zeros(3)
    state["encoder.0.bias"] = torch.zeros(5)
    path = tmp_path / "wrong.th"
    torch.save(state, path)
    with pytest.raises(cs.CheckpointMismatchError) as info:
        cs.load("encodec-24khz", weights=path)
    assert info.value.missing == ["decoder.0.weight"]
    assert info.value.unexpected == ["decoder.99.weight"]
    assert info.value.mismatched == [("encoder.0.bias", (5,), (32,))]
    assert "missing 1" in str(info.value) and "wrong shape" in str(info.value)

    other = tmp_path / "not_a_state_dict.th"
    torch.save({"epoch": 3, "config": "x"}, other)
    with pytest.raises(cs.CheckpointMismatchError, match="not an EnCodec state dict"):
        cs.load("encodec-24khz", weights=other)


def test_hub_weights_without_network_say_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(cs.WeightsUnavailableError, match="facebook/encodec_24khz.*weights=PATH"):
        cs.load("encodec-24khz")
    with pytest.raises(cs.WeightsUnavailableError, match="not a hub id"):
        cs.load("encodec-24khz", weights="no such thing")
