"""``codecstream latency-report``: what cutting lookahead costs, measured on real speech.

For each voice, the speech goes through the model's frontend (``encode``) and then through its
decoder three ways: offline, the exact stream (where the model has one), and windowed streams
with lookahead ``R`` frames. For each it reports the SNR against the offline output, the L1
distance between the log-mel of the input and of the output (the model's own frontend for
vocoders; an 80-bin log-mel at the output rate for codecs), the latency in ms (decoder alone,
and audio in → audio out through a streaming frontend) and the compute per second of audio.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..io.speech import speak
from ..registry import load

if TYPE_CHECKING:
    from ..plugin import Codec
    from ..streams import DecoderStream
    from ..windowed import WindowedDecoderStream

__all__ = ["latency_quality", "LatencyQualityRow", "write_plot", "DEFAULT_TEXT"]

DEFAULT_TEXT = (
    "Streaming vocoders trade lookahead for quality. Every frame of context they cannot see "
    "is a guess, and every guess can be heard as a click at the seams."
)


@dataclass
class LatencyQualityRow:
    voice: str
    mode: str  # "exact" or "windowed"
    lookahead_frames: int | None
    snr_db: float | None  # against the offline decode; None when exact to float precision
    max_abs_error: float
    logmel_l1: float  # |log-mel(input) - log-mel(output)|, mean
    decoder_latency_ms: float
    resynthesis_latency_ms: float | None  # frontend + decoder; None when the frontend is offline only
    compute_per_audio_s: float


def _run(stream: "DecoderStream | WindowedDecoderStream", model: "Codec", codes: Any) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    with torch.inference_mode():
        pieces = [stream.push(model.slice_codes(codes, f, f + 1)) for f in range(model.num_frames(codes))]
        pieces.append(stream.flush())
    return torch.cat(pieces, dim=-1), time.perf_counter() - started


def _log_mel(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """80-bin log-mel (n_fft 1024 at 22.05/24 kHz, scaled with the rate) of ``[B, C, T]``, ``[B·C, 80, F]``."""
    from ..streaming.spectral import mel_filterbank

    n_fft = 1 << round(math.log2(1024 * sample_rate / 24_000))
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spectrum = torch.stft(audio.reshape(-1, audio.shape[-1]).double(), n_fft, n_fft // 4, window=window, return_complex=True)
    filters = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=80)
    return torch.log(torch.clamp(filters.t() @ spectrum.abs(), min=1e-5))


def latency_quality(
    model_name: str = "hifigan-universal",
    *,
    weights: str | None = None,
    voices: Sequence[str] = ("espeak", "piper"),
    lookaheads: Sequence[int] = (0, 1, 2, 4, 8, 16),
    context_frames: int | None = None,
    block_frames: int = 4,
    text: str = DEFAULT_TEXT,
) -> list[LatencyQualityRow]:
    model = load(model_name, weights)
    rate, in_rate = model.sample_rate, model.encoder_sample_rate
    in_hop = model.hop_length * in_rate // rate
    encoder_latency_ms = model.encoder_stream().latency_ms if model.streaming_encoder else None
    vocoder = model.token_spec is None  # its frontend is a feature extractor: compare in its space
    rows: list[LatencyQualityRow] = []
    for voice in voices:
        audio, _ = speak(text, voice=voice, sample_rate=in_rate)
        audio = audio[..., : audio.shape[-1] // in_hop * in_hop]
        with torch.inference_mode():
            features = model.encode(audio)
            offline = model.decode(features)
        seconds = offline.shape[-1] / rate
        energy = float(offline.pow(2).sum())
        if not vocoder:
            import soxr

            reference = torch.from_numpy(soxr.resample(audio[0].t().double().numpy(), in_rate, rate)).t()[None]
            reference_mel = _log_mel(reference, rate)

        def row(mode: str, lookahead: int | None, stream: "DecoderStream | WindowedDecoderStream") -> LatencyQualityRow:
            out, elapsed = _run(stream, model, features)
            error = out - offline
            noise = float(error.pow(2).sum())
            exact = noise <= energy * 1e-12
            with torch.inference_mode():
                if vocoder:
                    distance = float((model.encode(out[..., : audio.shape[-1]])[..., : features.shape[-1]] - features).abs().mean())
                else:
                    mel = _log_mel(out, rate)
                    frames = min(mel.shape[-1], reference_mel.shape[-1])
                    distance = float((mel[..., :frames] - reference_mel[..., :frames]).abs().mean())
            return LatencyQualityRow(
                voice=voice,
                mode=mode,
                lookahead_frames=lookahead,
                snr_db=None if exact else 10 * math.log10(energy / noise),
                max_abs_error=float(error.abs().max()),
                logmel_l1=distance,
                decoder_latency_ms=stream.latency_ms,
                resynthesis_latency_ms=None if encoder_latency_ms is None else stream.latency_ms + encoder_latency_ms,
                compute_per_audio_s=elapsed / seconds,
            )

        if model.exact_decoder:
            rows.append(row("exact", None, model.decoder_stream()))
        for lookahead in lookaheads:
            stream = model.decoder_stream(
                mode="windowed", lookahead_frames=lookahead, context_frames=context_frames, block_frames=block_frames
            )
            rows.append(row("windowed", lookahead, stream))
    return rows


def write_json(path: Path, rows: list[LatencyQualityRow], settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")


def write_plot(path: Path, rows: list[LatencyQualityRow], title: str) -> None:
    """SNR and log-mel distance against decoder latency, one line per voice (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (snr_axis, mel_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for voice in sorted({r.voice for r in rows}):
        mine = [r for r in rows if r.voice == voice]
        windowed = [r for r in mine if r.mode == "windowed"]
        exact = next((r for r in mine if r.mode == "exact"), None)
        top = max([r.snr_db for r in windowed if r.snr_db is not None] + [0.0]) + 10
        snr_axis.plot([r.decoder_latency_ms for r in windowed], [r.snr_db if r.snr_db is not None else top for r in windowed], "o-", label=f"{voice}, windowed")
        for r in windowed:
            snr_axis.annotate(f"R={r.lookahead_frames}", (r.decoder_latency_ms, r.snr_db if r.snr_db is not None else top), fontsize=7, xytext=(3, 3), textcoords="offset points")
        mel_axis.plot([r.decoder_latency_ms for r in windowed], [r.logmel_l1 for r in windowed], "o-", label=f"{voice}, windowed")
        if exact is not None:
            snr_axis.plot([exact.decoder_latency_ms], [exact.snr_db if exact.snr_db is not None else top], "*", markersize=12, label=f"{voice}, exact")
            mel_axis.plot([exact.decoder_latency_ms], [exact.logmel_l1], "*", markersize=12, label=f"{voice}, exact")
    snr_axis.set(xlabel="decoder latency (ms)", ylabel="SNR vs offline (dB)", title="error against offline (exact: float32 rounding)")
    mel_axis.set(xlabel="decoder latency (ms)", ylabel="log-mel L1 vs input", title="distance to the input speech")
    for axis in (snr_axis, mel_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_table(rows: list[LatencyQualityRow]) -> str:
    lines = [
        "| voice | mode | R (frames) | SNR vs offline (dB) | log-mel L1 | decoder latency (ms) | resynthesis latency (ms) | compute (s per s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        snr = "exact" if r.snr_db is None else f"{r.snr_db:.1f}"
        lines.append(
            f"| {r.voice} | {r.mode} | {'-' if r.lookahead_frames is None else r.lookahead_frames} | {snr} | "
            f"{r.logmel_l1:.3f} | {r.decoder_latency_ms:.1f} | "
            f"{'offline frontend' if r.resynthesis_latency_ms is None else f'{r.resynthesis_latency_ms:.1f}'} | {r.compute_per_audio_s:.2f} |"
        )
    return "\n".join(lines)
