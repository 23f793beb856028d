"""Orpheus TTS audio tokens ↔ SNAC 24 kHz codes, decoded token by token.

Orpheus emits 7 tokens per 85.3 ms frame ``j``, in the order
``L0[j], L1[2j], L2[4j], L2[4j+1], L1[2j+1], L2[4j+2], L2[4j+3]``; slot ``k`` of a frame has the
id ``128266 + k·4096 + code`` (code 0 included). :class:`OrpheusDecoder` feeds each token to an
exact SNAC decoder stream the moment it arrives: a latent frame is decoded as soon as its three
codes are in, and audio comes out as soon as it is final.

(The sliding-window decoder Orpheus ships, the benchmark's baseline, is in
``codecstream.commands.orpheus_baseline``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
from torch import Tensor

from ..errors import CodeRangeError, OptionError, StreamStateError
from ..runtime._compat import Renamed

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = [
    "OrpheusDecoder",
    "orpheus_token_ids",
    "tokens_for_latent_frames",
    "check_model",
    "AUDIO_TOKEN_BASE",
    "CODEBOOK_SIZE",
    "SLOT_LEVELS",
    "TOKENS_PER_FRAME",
]

AUDIO_TOKEN_BASE = 128266
CODEBOOK_SIZE = 4096
SLOT_LEVELS = (0, 1, 2, 2, 1, 2, 2)  # SNAC level of each of the 7 slots of a frame
TOKENS_PER_FRAME = len(SLOT_LEVELS)


def check_model(model: "Codec") -> None:
    """Raise :class:`~codecstream.OptionError` unless ``model`` has SNAC 24 kHz's code layout."""
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
    :class:`~codecstream.StreamStateError` (an utterance that ends mid-frame). A
    :class:`~codecstream.tokens.base.TokenAdapter`.
    """

    latency = Renamed[int]("latency_samples")  # the old name (deprecated, kept for one release)

    def __init__(self, model: "Codec", *, noise: bool = True, noise_seed: int = 0, decode_every: str = "token") -> None:
        """``decode_every="token"`` decodes each latent frame as soon as its codes are in
        (lowest latency); ``"frame"`` decodes once per 7-token frame: the same audio, up to 3
        latent frames (64 ms) later, for much less compute on CPUs where re-reading the
        decoder's weights per latent frame dominates."""
        check_model(model)
        if decode_every not in ("token", "frame"):
            raise OptionError(f"decode_every must be 'token' or 'frame', got {decode_every!r}")
        self.model = model
        self.decode_every = decode_every
        self.stream = model.decoder_stream(1, noise=noise, noise_seed=noise_seed)
        self.tokens_in = 0
        self._held: list[list[int]] = [[], [], []]  # codes received, not yet pushed, per level
        self._pushed = [0, 0, 0]  # codes pushed per level

    @property
    def latency_samples(self) -> int:
        """Samples of audio the decoder holds back after a latent frame's last code arrives."""
        return self.stream.latency_samples

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
