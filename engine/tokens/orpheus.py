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

from typing import Any, Iterable

import torch
from torch import Tensor

from ..errors import CodeRangeError, OptionError, StreamStateError

__all__ = ["OrpheusDecoder", "OrpheusWindowDecoder", "orpheus_token_ids", "AUDIO_TOKEN_BASE", "SLOT_LEVELS"]

AUDIO_TOKEN_BASE = 128266
CODEBOOK_SIZE = 4096
SLOT_LEVELS = (0, 1, 2, 2, 1, 2, 2)  # SNAC level of each of the 7 slots of a frame
TOKENS_PER_FRAME = len(SLOT_LEVELS)


def _check_model(model: Any) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "vq_strides", None) != (4, 2, 1) or getattr(config, "codebook_size", None) != CODEBOOK_SIZE:
        raise OptionError(f"the Orpheus layout needs SNAC 24 kHz codes (strides 4, 2, 1 of 4096); got {getattr(model, 'name', model)}")


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

    def __init__(self, model: Any, *, noise: bool = True, noise_seed: int = 0) -> None:
        _check_model(model)
        self.model = model
        self.stream = model.decoder_stream(1, noise=noise, noise_seed=noise_seed)
        self.tokens_in = 0

    @property
    def latency(self) -> int:
        """Samples of audio the decoder holds back after a latent frame's last code arrives."""
        return self.stream.latency

    def push(self, token_ids: int | Iterable[int] | Tensor) -> Tensor:
        levels: list[list[int]] = [[], [], []]
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
            levels[SLOT_LEVELS[slot]].append(code)
            self.tokens_in += 1
        device = self.model.device
        codes = [torch.tensor([level], dtype=torch.long, device=device).view(1, -1) for level in levels]
        return self.stream.push(codes)

    def flush(self) -> Tensor:
        if self.tokens_in % TOKENS_PER_FRAME:
            raise StreamStateError(
                f"the utterance ended mid-frame: {self.tokens_in % TOKENS_PER_FRAME} of {TOKENS_PER_FRAME} tokens"
            )
        return self.stream.flush()

    def reset(self) -> None:
        self.stream.reset()
        self.tokens_in = 0


class OrpheusWindowDecoder:
    """The decoder Orpheus ships, as a baseline: when ``count % 7 == 0 and count > 27``, decode
    the last 28 tokens (4 frames) offline and keep samples ``2048:4096`` (the second frame).

    It never emits the first frame nor the last two, waits for 2 frames of lookahead, recomputes
    every sample 4 times, and decodes each window with fresh noise. ``emitted`` maps each
    output chunk to the absolute sample it starts at, so its error can be measured.
    """

    window_tokens = 28
    keep = (2048, 4096)

    def __init__(self, model: Any, *, noise: bool = False) -> None:
        _check_model(model)
        self.model = model
        self.noise = noise
        self.tokens: list[int] = []

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
        stream = self.model.decoder_stream(1, noise=self.noise, noise_seed=len(self.tokens))
        audio = torch.cat([stream.push(tensors), stream.flush()], dim=-1)
        return audio[..., self.keep[0] : self.keep[1]]

    def emitted_start(self, count: int) -> int:
        """Absolute start sample of the chunk emitted after ``count`` tokens."""
        frames = count // TOKENS_PER_FRAME
        return (frames - 3) * 2048
