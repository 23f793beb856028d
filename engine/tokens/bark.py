"""Bark's EnCodec tokens → audio through ``encodec-24khz`` or ``vocos-encodec-24khz``.

Bark speaks EnCodec 24 kHz codes in two layouts:

- ``"fine"``: its fine stage's ``[8, T]`` codes (6 kbps). As a token stream: 8 codes per frame,
  frame after frame (code-book 0..7 of frame 0, then of frame 1, ...), each in ``0..1023``.
- ``"coarse"``: its coarse stage's interleaved ids, 2 per frame: ``10000 + k·1024 + code`` for
  code-book ``k`` in 0, 1 (1.5 kbps), usable for an early, lower-quality preview.

:class:`BarkDecoder` decodes each frame the moment its last token arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
from torch import Tensor

from ..errors import CodeRangeError, OptionError, StreamStateError
from ..runtime._compat import Renamed

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["BarkDecoder", "bark_token_ids", "SEMANTIC_VOCAB_SIZE", "CODEBOOK_SIZE"]

SEMANTIC_VOCAB_SIZE = 10_000
CODEBOOK_SIZE = 1024
LAYOUTS = {"fine": 8, "coarse": 2}


def bark_token_ids(codes: Tensor, layout: str = "fine") -> list[int]:
    """``[K, T]`` (or ``[1, K, T]``) EnCodec codes → Bark's token stream in ``layout``."""
    if codes.dim() == 3:
        codes = codes[0]
    books = LAYOUTS[layout]
    frames = codes[:books].T.tolist()
    if layout == "fine":
        return [code for frame in frames for code in frame]
    return [SEMANTIC_VOCAB_SIZE + k * CODEBOOK_SIZE + code for frame in frames for k, code in enumerate(frame)]


class BarkDecoder:
    """Bark tokens in (any grouping), audio ``[1, 1, n]`` out as soon as it is final (a
    :class:`~codecstream.tokens.base.TokenAdapter`)."""

    latency = Renamed[int]("latency_samples")  # the old name (deprecated, kept for one release)

    def __init__(self, model: "Codec", *, layout: str = "fine") -> None:
        if layout not in LAYOUTS:
            raise OptionError(f"layout must be 'fine' or 'coarse', got {layout!r}")
        spec = getattr(model, "token_spec", None)
        if spec is None or spec.levels[0].codebook_size != CODEBOOK_SIZE or model.sample_rate != 24_000:
            raise OptionError(f"Bark tokens are EnCodec 24 kHz codes; decode them with encodec-24khz or vocos-encodec-24khz, not {getattr(model, 'name', model)}")
        self.model = model
        self.layout = layout
        self.books = LAYOUTS[layout]
        self.stream = model.decoder_stream(1)
        self.tokens_in = 0
        self._frame: list[int] = []

    @property
    def latency_samples(self) -> int:
        return self.stream.latency_samples

    def push(self, token_ids: int | Iterable[int] | Tensor) -> Tensor:
        """Decode ``token_ids`` and return the audio that is now final, ``[1, 1, n]``."""
        codes = self.codes_for(token_ids)
        return self.model.empty_audio(1) if codes is None else self.stream.push(codes)

    def codes_for(self, token_ids: int | Iterable[int] | Tensor) -> Tensor | None:
        """Validate tokens; return the ``[1, K, n]`` codes of the frames they complete, or None."""
        ids = [int(t) for t in (token_ids.reshape(-1).tolist() if isinstance(token_ids, Tensor) else [token_ids] if isinstance(token_ids, int) else token_ids)]
        frames: list[list[int]] = []
        for token in ids:
            slot = len(self._frame)
            code = token if self.layout == "fine" else token - SEMANTIC_VOCAB_SIZE - slot * CODEBOOK_SIZE
            if not 0 <= code < CODEBOOK_SIZE:
                expected = "0..1023" if self.layout == "fine" else f"{SEMANTIC_VOCAB_SIZE + slot * CODEBOOK_SIZE}..{SEMANTIC_VOCAB_SIZE + (slot + 1) * CODEBOOK_SIZE - 1}"
                raise CodeRangeError(f"Bark {self.layout} token {token} (#{self.tokens_in}, code-book {slot}) is outside {expected}")
            self._frame.append(code)
            self.tokens_in += 1
            if len(self._frame) == self.books:
                frames.append(self._frame)
                self._frame = []
        if not frames:
            return None
        return torch.tensor(frames, dtype=torch.long, device=self.model.device).T[None]  # [1, K, n]

    def check_end(self) -> None:
        if self._frame:
            raise StreamStateError(f"the utterance ended mid-frame: {len(self._frame)} of {self.books} tokens")

    def flush(self) -> Tensor:
        self.check_end()
        return self.stream.flush()

    def reset(self) -> None:
        self.stream.reset()
        self.tokens_in, self._frame = 0, []
