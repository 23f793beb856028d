"""Orpheus TTS audio tokens ↔ SNAC 24 kHz codes, decoded token by token.

Orpheus emits 7 tokens per 85.3 ms frame ``j``, in the order
``L0[j], L1[2j], L2[4j], L2[4j+1], L1[2j+1], L2[4j+2], L2[4j+3]``; slot ``k`` of a frame has the
id ``128266 + k·4096 + code`` (code 0 included). :class:`OrpheusDecoder` feeds each token to an
exact SNAC decoder stream the moment it arrives: a latent frame is decoded as soon as its three
codes are in, and audio comes out as soon as it is final.

:class:`OrpheusWindowDecoder` reproduces the sliding window Orpheus ships (decode the last 28
tokens, keep samples 2048..4096), as the baseline the benchmark measures ours against.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from ..errors import CodeRangeError, OptionError, StreamStateError

__all__ = [
    "OrpheusDecoder",
    "OrpheusWindowDecoder",
    "orpheus_token_ids",
    "compare_with_window_baseline",
    "tokens_for_latent_frames",
    "AUDIO_TOKEN_BASE",
    "SLOT_LEVELS",
]

AUDIO_TOKEN_BASE = 128266
CODEBOOK_SIZE = 4096
SLOT_LEVELS = (0, 1, 2, 2, 1, 2, 2)  # SNAC level of each of the 7 slots of a frame
TOKENS_PER_FRAME = len(SLOT_LEVELS)


def _check_model(model: Any) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "vq_strides", None) != (4, 2, 1) or getattr(config, "codebook_size", None) != CODEBOOK_SIZE:
        raise OptionError(f"the Orpheus layout needs SNAC 24 kHz codes (strides 4, 2, 1 of 4096); got {getattr(model, 'name', model)}")


def tokens_for_latent_frames(frames: int) -> int:
    """Orpheus tokens that must have arrived before SNAC latent frames ``0 .. frames-1`` are
    complete (latent frame ``4j + r`` needs token 3, 4, 6 or 7 of frame ``j``)."""
    if frames <= 0:
        return 0
    coarse, within = divmod(frames - 1, 4)
    return TOKENS_PER_FRAME * coarse + (3, 4, 6, 7)[within]


def orpheus_token_ids(codes: list[Tensor]) -> list[int]:
    """SNAC 24 kHz codes (``[1, n]``, ``[1, 2n]``, ``[1, 4n]``) → Orpheus token ids, 7 per frame."""
    level0, level1, level2 = (c[0].tolist() for c in codes)
    ids: list[int] = []
    for j in range(len(level0)):
        frame = (level0[j], level1[2 * j], level2[4 * j], level2[4 * j + 1], level1[2 * j + 1], level2[4 * j + 2], level2[4 * j + 3])
        ids += [AUDIO_TOKEN_BASE + slot * CODEBOOK_SIZE + code for slot, code in enumerate(frame)]
    return ids


def _as_ids(token_ids: int | Iterable[int] | Tensor) -> list[int]:
    if isinstance(token_ids, Tensor):
        if token_ids.is_floating_point():
            raise CodeRangeError("token ids must be integers")
        return [int(t) for t in token_ids.reshape(-1).tolist()]
    if isinstance(token_ids, int):
        return [token_ids]
    return [int(t) for t in token_ids]


class OrpheusDecoder:
    """Orpheus audio token ids in (one at a time or in bursts), SNAC 24 kHz audio out.

    ``push`` returns ``[1, 1, n]`` float audio, possibly empty; ``flush`` ends the utterance
    and returns the rest (every frame is emitted). The result equals ``model.decode`` of the
    same codes. Malformed input raises :class:`~codecstream.CodeRangeError` (an id that is not
    an audio token, or a token in the wrong slot: one was lost or duplicated) or
    :class:`~codecstream.StreamStateError` (an utterance that ends mid-frame).
    """

    def __init__(self, model: Any, *, noise: bool = True, noise_seed: int = 0, decode_every: str = "token") -> None:
        """``decode_every="token"`` decodes each latent frame as soon as its codes are in
        (lowest latency); ``"frame"`` decodes once per 7-token frame: the same audio, up to 3
        latent frames (64 ms) later, for much less compute on CPUs where re-reading the
        decoder's weights per latent frame dominates."""
        _check_model(model)
        if decode_every not in ("token", "frame"):
            raise OptionError(f"decode_every must be 'token' or 'frame', got {decode_every!r}")
        self.model = model
        self.decode_every = decode_every
        self.stream = model.decoder_stream(1, noise=noise, noise_seed=noise_seed)
        self.tokens_in = 0
        self._held: list[list[int]] = [[], [], []]  # codes received, not yet pushed, per level
        self._pushed = [0, 0, 0]  # codes pushed per level

    @property
    def latency(self) -> int:
        """Samples of audio the decoder holds back after a latent frame's last code arrives."""
        return self.stream.latency

    def codes_for(self, token_ids: int | Iterable[int] | Tensor) -> list[Tensor]:
        """Validate tokens and return the SNAC codes (one ``[1, n]`` tensor per level) that
        can go to a decoder now (all of them, or whole frames with ``decode_every="frame"``)."""
        for token in _as_ids(token_ids):
            slot = self.tokens_in % TOKENS_PER_FRAME
            code = token - AUDIO_TOKEN_BASE - slot * CODEBOOK_SIZE
            if not 0 <= code < CODEBOOK_SIZE:
                offset = token - AUDIO_TOKEN_BASE
                if 0 <= offset < TOKENS_PER_FRAME * CODEBOOK_SIZE:
                    raise CodeRangeError(
                        f"token {token} (#{self.tokens_in}) belongs to slot {offset // CODEBOOK_SIZE} but slot "
                        f"{slot} is due: a token was lost or duplicated"
                    )
                raise CodeRangeError(
                    f"token {token} (#{self.tokens_in}) is not an Orpheus audio token (ids "
                    f"{AUDIO_TOKEN_BASE}..{AUDIO_TOKEN_BASE + TOKENS_PER_FRAME * CODEBOOK_SIZE - 1}); "
                    "filter out text and control tokens before decoding"
                )
            self._held[SLOT_LEVELS[slot]].append(code)
            self.tokens_in += 1
        if self.decode_every == "frame":
            frames = self.tokens_in // TOKENS_PER_FRAME  # release whole frames only
            counts = [frames * per_frame - pushed for per_frame, pushed in zip((1, 2, 4), self._pushed)]
        else:
            counts = [len(level) for level in self._held]
        ready = [level[:count] for level, count in zip(self._held, counts)]
        self._held = [level[count:] for level, count in zip(self._held, counts)]
        self._pushed = [pushed + count for pushed, count in zip(self._pushed, counts)]
        return [torch.tensor(level, dtype=torch.long, device=self.model.device).view(1, -1) for level in ready]

    def push(self, token_ids: int | Iterable[int] | Tensor) -> Tensor:
        """Decode ``token_ids`` and return the audio that is now final, ``[1, 1, n]``."""
        return self.stream.push(self.codes_for(token_ids))

    def check_end(self) -> None:
        if self.tokens_in % TOKENS_PER_FRAME:
            raise StreamStateError(
                f"the utterance ended mid-frame: {self.tokens_in % TOKENS_PER_FRAME} of {TOKENS_PER_FRAME} tokens"
            )

    def flush(self) -> Tensor:
        self.check_end()
        return self.stream.flush()

    def reset(self) -> None:
        self.stream.reset()
        self.tokens_in = 0
        self._held, self._pushed = [[], [], []], [0, 0, 0]


class OrpheusWindowDecoder:
    """The decoder Orpheus ships, as a baseline: when ``count % 7 == 0 and count > 27``, decode
    the last 28 tokens (4 frames) offline and keep samples ``2048:4096`` (the second frame).

    It never emits the first frame nor the last two, waits for 2 frames of lookahead, recomputes
    every sample 4 times, and decodes each window with fresh noise. ``emitted`` maps each
    output chunk to the absolute sample it starts at, so its error can be measured.
    """

    window_tokens = 28
    keep = (2048, 4096)

    def __init__(self, model: Any, *, decode: Callable[[list[Tensor]], Tensor] | None = None) -> None:
        """``decode``: how a window is decoded (Orpheus calls the ``snac`` package's
        ``SNAC.decode``); by default ``model``'s own offline decode with noise off."""
        _check_model(model)
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
    model: Any, codes: list[Tensor], *, window_decode: Callable[[list[Tensor]], Tensor] | None = None, package: str = "codecstream"
) -> dict[str, Any]:
    """Decode the Orpheus tokens of ``codes`` token by token with :class:`OrpheusDecoder` and
    with :class:`OrpheusWindowDecoder` (its windows decoded by ``window_decode``), noise off in
    both; report compute per second of audio, error against the offline decode, lookahead and
    the tokens before the first audio."""
    import time

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
            "lookahead_samples": ours.latency + wait,
            "lookahead_ms": 1000 * (ours.latency + wait) / rate,
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
