"""The sliding-window decoder Orpheus ships, as the benchmark's baseline, and the comparison
``codecstream bench`` runs for SNAC 24 kHz: ours (:class:`~codecstream.tokens.OrpheusDecoder`,
token by token) against Orpheus's window (decode the last 28 tokens, keep samples 2048..4096).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from ..tokens.orpheus import (
    AUDIO_TOKEN_BASE,
    CODEBOOK_SIZE,
    SLOT_LEVELS,
    TOKENS_PER_FRAME,
    OrpheusDecoder,
    check_model,
    orpheus_token_ids,
)

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["OrpheusWindowDecoder", "compare_with_window_baseline"]


class OrpheusWindowDecoder:
    """The decoder Orpheus ships, as a baseline: when ``count % 7 == 0 and count > 27``, decode
    the last 28 tokens (4 frames) offline and keep samples ``2048:4096`` (the second frame).

    It never emits the first frame nor the last two, waits for 2 frames of lookahead, recomputes
    every sample 4 times, and decodes each window with fresh noise. ``emitted`` maps each
    output chunk to the absolute sample it starts at, so its error can be measured.
    """

    window_tokens = 28
    keep = (2048, 4096)

    def __init__(self, model: "Codec", *, decode: Callable[[list[Tensor]], Tensor] | None = None) -> None:
        """``decode``: how a window is decoded (Orpheus calls the ``snac`` package's
        ``SNAC.decode``); by default ``model``'s own offline decode with noise off."""
        check_model(model)
        self.model = model
        self.decode = decode or self._decode_offline
        self.tokens: list[int] = []

    def _decode_offline(self, codes: list[Tensor]) -> Tensor:
        stream = self.model.decoder_stream(1, noise=False)
        return torch.cat([stream.push(codes), stream.flush()], dim=-1)

    def push(self, token_id: int) -> Tensor | None:
        self.tokens.append(int(token_id))
        count = len(self.tokens)
        if count % TOKENS_PER_FRAME or count <= self.window_tokens - 1:
            return None
        window = self.tokens[-self.window_tokens :]
        codes: list[list[int]] = [[], [], []]
        for position, token in enumerate(window):
            slot = position % TOKENS_PER_FRAME
            codes[SLOT_LEVELS[slot]].append(token - AUDIO_TOKEN_BASE - slot * CODEBOOK_SIZE)
        tensors = [torch.tensor([level], dtype=torch.long, device=self.model.device) for level in codes]
        with torch.inference_mode():
            audio = self.decode(tensors)
        return audio[..., self.keep[0] : self.keep[1]]

    def emitted_start(self, count: int) -> int:
        """Absolute start sample of the chunk emitted after ``count`` tokens."""
        frames = count // TOKENS_PER_FRAME
        return (frames - 3) * 2048


def compare_with_window_baseline(
    model: "Codec", codes: list[Tensor], *, window_decode: Callable[[list[Tensor]], Tensor] | None = None, package: str = "codecstream"
) -> dict[str, Any]:
    """Decode the Orpheus tokens of ``codes`` token by token with :class:`OrpheusDecoder` and
    with :class:`OrpheusWindowDecoder` (its windows decoded by ``window_decode``), noise off in
    both; report compute per second of audio, error against the offline decode, lookahead and
    the tokens before the first audio."""
    ids = orpheus_token_ids([c[:1] for c in codes])
    frames = len(ids) // TOKENS_PER_FRAME
    quiet = model.decoder_stream(1, noise=False)
    with torch.inference_mode():
        offline = torch.cat([quiet.push([c[:1] for c in codes]), quiet.flush()], dim=-1)
    peak = float(offline.abs().max()) or 1.0
    rate = model.sample_rate

    def run_ours(decode_every: str) -> dict[str, Any]:
        ours = OrpheusDecoder(model, noise=False, decode_every=decode_every)
        pieces, first_audio_token = [], None
        started = time.perf_counter()
        for index, token in enumerate(ids):
            piece = ours.push(token)
            if first_audio_token is None and piece.shape[-1]:
                first_audio_token = index + 1
            pieces.append(piece)
        pieces.append(ours.flush())
        elapsed = time.perf_counter() - started
        audio = torch.cat(pieces, dim=-1)
        wait = 0 if decode_every == "token" else 3 * model.hop_length  # a frame's first latent waits for its last
        return {
            "compute_s": elapsed,
            "compute_per_audio_s": elapsed / (audio.shape[-1] / rate),
            "max_error": float((audio - offline).abs().max()) / peak,
            "lookahead_samples": ours.latency_samples + wait,
            "lookahead_ms": 1000 * (ours.latency_samples + wait) / rate,
            "first_audio_after_tokens": first_audio_token,
            "emitted_s": audio.shape[-1] / rate,
        }

    per_token, per_frame = run_ours("token"), run_ours("frame")

    baseline = OrpheusWindowDecoder(model, decode=window_decode)
    errors, emitted, baseline_first = [], 0, None
    started = time.perf_counter()
    for count, token in enumerate(ids, start=1):
        chunk = baseline.push(token)
        if chunk is not None:
            if baseline_first is None:
                baseline_first = count
            begin = baseline.emitted_start(count)
            errors.append(float((chunk - offline[..., begin : begin + chunk.shape[-1]]).abs().max()))
            emitted += chunk.shape[-1]
    baseline_s = time.perf_counter() - started

    # Time to first audio with tokens arriving at the real-time rate (82 per second), as a
    # TTS model just fast enough would send them: from the first token to the first sample out.
    token_rate = TOKENS_PER_FRAME * rate / 2048

    def time_to_first_audio(push: Callable[[int], Any]) -> float:
        started = time.monotonic()
        for index, token in enumerate(ids):
            delay = started + index / token_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            out = push(token)
            if out is not None and out.shape[-1]:
                return 1000 * (time.monotonic() - started)
        return float("nan")

    ttfa = {
        "ours_per_token": time_to_first_audio(OrpheusDecoder(model, noise=False).push),
        "ours_per_frame": time_to_first_audio(OrpheusDecoder(model, noise=False, decode_every="frame").push),
        "window_baseline": time_to_first_audio(OrpheusWindowDecoder(model, decode=window_decode).push),
    }
    per_token["ttfa_ms"], per_frame["ttfa_ms"] = ttfa["ours_per_token"], ttfa["ours_per_frame"]

    seconds = offline.shape[-1] / rate
    return {
        "frames": frames,
        "tokens": len(ids),
        "audio_s": seconds,
        "ours_per_token": per_token,
        "ours_per_frame": per_frame,
        "window_baseline": {
            "decoded_by": package,
            "compute_per_audio_s": baseline_s / (emitted / rate) if emitted else float("inf"),
            "max_error": max(errors) / peak if errors else float("nan"),
            "lookahead_samples": 3 * 2048,  # frame j-2 is emitted when frame j completes
            "lookahead_ms": 1000 * 3 * 2048 / rate,
            "first_audio_after_tokens": baseline_first,
            "emitted_s": emitted / rate,
            "ttfa_ms": ttfa["window_baseline"],
        },
        "compute_ratio_baseline_over_ours_per_token": (baseline_s / max(emitted, 1)) / (per_token["compute_s"] / offline.shape[-1]),
        "compute_ratio_baseline_over_ours_per_frame": (baseline_s / max(emitted, 1)) / (per_frame["compute_s"] / offline.shape[-1]),
    }
