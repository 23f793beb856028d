"""The command line, run as a user runs it: a subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

import codecstream as cs
from codecstream.codes_file import read_codes
from codecstream.signals import speech_like as speechlike


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "codecstream", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "speech.wav"
    soundfile.write(path, speechlike(0.7, 24_000, 1)[0, 0].numpy(), 24_000, subtype="FLOAT")
    return path


def test_list():
    assert "encodec-24khz" in run("list").stdout


def test_encode_decode_files_match_the_api(wav, tmp_path):
    codes_path, out_path = tmp_path / "speech.codes", tmp_path / "decoded.wav"
    run("encode", str(wav), str(codes_path), "--model", "encodec-24khz", "--weights", "random", "--bandwidth", "6", "--chunk-ms", "20")
    file = read_codes(codes_path)
    assert (file.model, file.sample_rate, file.channels, file.hop_length, file.bandwidth_kbps) == ("encodec-24khz", 24000, 1, 320, 6.0)
    assert file.num_samples == 16800
    model = cs.load("encodec-24khz", weights="random")
    audio = torch.from_numpy(soundfile.read(wav, dtype="float32")[0])[None, None]
    expected = model.encode(audio, bandwidth=6.0)
    assert torch.equal(file.levels[0], expected)

    # A different chunk size writes the same codes.
    other = tmp_path / "other.codes"
    run("encode", str(wav), str(other), "--model", "encodec-24khz", "--weights", "random", "--bandwidth", "6", "--chunk-ms", "7")
    assert torch.equal(read_codes(other).levels[0], expected)

    run("decode", str(codes_path), str(out_path), "--weights", "random", "--chunk-ms", "40")
    decoded, rate = soundfile.read(out_path, dtype="float32")
    assert rate == 24000 and decoded.shape == (16800,)
    reference = model.decode(expected)[0, 0, :16800].clamp(-1, 1).numpy()
    assert np.abs(decoded - reference).max() <= 1.5 / 32768  # 16-bit PCM rounding


def test_roundtrip_reports_latency_and_equals_encode_decode(wav, tmp_path):
    out = tmp_path / "roundtrip.wav"
    result = run("roundtrip", str(wav), str(out), "--model", "encodec-24khz", "--weights", "random", "--bandwidth", "3", "--chunk-ms", "20", "--progress")
    assert "algorithmic latency 13.3 ms" in result.stdout
    assert "100.0%" in result.stderr  # the progress bar reached the end
    model = cs.load("encodec-24khz", weights="random")
    audio = torch.from_numpy(soundfile.read(wav, dtype="float32")[0])[None, None]
    expected = model.decode(model.encode(audio, bandwidth=3.0))[0, 0, : audio.shape[-1]].clamp(-1, 1).numpy()
    assert np.abs(soundfile.read(out, dtype="float32")[0] - expected).max() <= 1.5 / 32768


def test_file_errors_are_reported_cleanly(wav, tmp_path):
    at_16k = tmp_path / "16k.wav"
    soundfile.write(at_16k, np.zeros(1600, dtype=np.float32), 16000)
    result = run("encode", str(at_16k), str(tmp_path / "x.codes"), "--model", "encodec-24khz", "--weights", "random", check=False)
    assert result.returncode == 2 and "SampleRateError" in result.stderr and "--resample" in result.stderr

    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.zeros((2400, 2), dtype=np.float32), 24000)
    result = run("encode", str(stereo), str(tmp_path / "x.codes"), "--model", "encodec-24khz", "--weights", "random", check=False)
    assert result.returncode == 2 and "ChannelError" in result.stderr and "--mix" in result.stderr
    run("encode", str(stereo), str(tmp_path / "x.codes"), "--model", "encodec-24khz", "--weights", "random", "--mix")

    bogus = tmp_path / "bogus.codes"
    bogus.write_bytes(b"not a codes file")
    result = run("decode", str(bogus), str(tmp_path / "y.wav"), "--weights", "random", check=False)
    assert result.returncode == 2 and "CodesFileError" in result.stderr

    result = run("encode", str(wav), str(tmp_path / "x.codes"), "--model", "nope", "--weights", "random", check=False)
    assert result.returncode == 2 and "UnknownModelError" in result.stderr

    # A codes file whose version is not a number, or whose tensors are not codes: a clean error.
    from safetensors.torch import save_file

    for metadata, tensors in (
        ({"format": "codecstream-codes", "version": "x"}, {"codes.0": torch.zeros(1, 1, 2, dtype=torch.int32)}),
        ({"format": "codecstream-codes", "version": "1"}, {"weights": torch.zeros(3)}),
    ):
        odd = tmp_path / "odd.codes"
        save_file(tensors, str(odd), metadata=metadata)
        result = run("decode", str(odd), str(tmp_path / "y.wav"), "--weights", "random", check=False)
        assert result.returncode == 2 and "CodesFileError" in result.stderr, result.stderr


def test_resample_option(tmp_path):
    pytest.importorskip("soxr", reason="resampling uses soxr from the audio extra")
    at_16k = tmp_path / "16k.wav"
    soundfile.write(at_16k, speechlike(0.5, 16000, 1)[0, 0].numpy(), 16000)
    run("encode", str(at_16k), str(tmp_path / "x.codes"), "--model", "encodec-24khz", "--weights", "random", "--resample")
    assert read_codes(tmp_path / "x.codes").num_samples == 12000


def test_bench_writes_the_figures(tmp_path):
    out = tmp_path / "bench.json"
    result = run("bench", "--model", "encodec-24khz", "--weights", "random", "--seconds", "1", "--chunk-ms", "20", "80", "--repeats", "1", "--json", str(out))
    assert "RTF" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["model"] == "encodec-24khz" and figures["seconds"] == 1
    assert figures["offline"]["rtf"] > 0
    assert [s["chunk_ms"] for s in figures["streaming"]] == [20, 80]
    for s in figures["streaming"]:
        assert 0 < s["chunk_p50_ms"] <= s["chunk_p99_ms"] <= s["chunk_max_ms"]
        assert s["chunks"] == (50 if s["chunk_ms"] == 20 else 13)
    assert figures["latency"]["encoder_samples"] == 320 and figures["latency"]["decoder_samples"] == 0
    assert figures["reference"]["package"] == "encodec"
    assert figures["reference"]["max_abs_diff"] < 1e-4  # the reference ran on our weights
