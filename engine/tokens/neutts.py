"""NeuTTS (Neuphonic) speech tokens: ``<|speech_N|>`` with ``N`` a NeuCodec FSQ code in
``0..65535`` at 50 Hz. This module reads the layout; decoding needs a NeuCodec plugin
(:class:`NeuTTSDecoder` takes any model that decodes ``[1, 1, T]`` codes of 65536 entries)."""

from __future__ import annotations

import operator
import re
from typing import TYPE_CHECKING, Any, Iterable, SupportsIndex

import torch
from torch import Tensor

from ..errors import CodeRangeError, OptionError

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["parse_neutts", "NeuTTSDecoder", "FSQ_CODES"]

FSQ_CODES = 65536
_SPEECH = re.compile(r"<\|speech_(\d+)\|>")


def parse_neutts(tokens: str | Iterable[str] | Iterable[int] | Tensor, *, id_offset: int | None = None) -> list[int]:
    """Codes from NeuTTS output: decoded text (``"<|speech_12|><|speech_7|>..."``), a list of
    such strings, or vocabulary ids (a list or a tensor) with ``id_offset`` (the id of
    ``<|speech_0|>``). Text between speech tokens is ignored; a speech code outside 0..65535 raises."""
    if isinstance(tokens, str):
        codes = [int(n) for n in _SPEECH.findall(tokens)]
    else:
        items: list[object] = tokens.reshape(-1).tolist() if isinstance(tokens, Tensor) else list(tokens)
        texts = [t for t in items if isinstance(t, str)]
        if items and len(texts) == len(items):
            codes = [int(n) for t in texts for n in _SPEECH.findall(t)]
        else:
            if id_offset is None:
                raise OptionError("integer NeuTTS token ids need id_offset (the id of <|speech_0|>)")
            codes = [_token_id(t) - id_offset for t in items]
    bad = [c for c in codes if not 0 <= c < FSQ_CODES]
    if bad:
        raise CodeRangeError(f"NeuTTS speech codes must lie in 0..{FSQ_CODES - 1}, got {bad[:3]}")
    return codes


def _token_id(token: object) -> int:
    if not isinstance(token, SupportsIndex):  # ints, NumPy and 0-d tensor integers
        raise CodeRangeError(f"NeuTTS token ids must be integers (or all of them <|speech_N|> text), got {token!r}")
    return operator.index(token)


class NeuTTSDecoder:
    """NeuTTS tokens in, audio out through a NeuCodec-style decoder stream (a
    :class:`~codecstream.tokens.base.TokenDecoder`)."""

    def __init__(self, model: "Codec", *, id_offset: int | None = None, **stream_options: Any) -> None:
        spec = getattr(model, "token_spec", None)
        if spec is None or spec.levels[0].codebook_size != FSQ_CODES:
            raise OptionError(f"NeuTTS tokens are NeuCodec codes (65536 entries); {getattr(model, 'name', model)} does not decode them")
        self.model = model
        self.id_offset = id_offset
        self.stream = model.decoder_stream(1, **stream_options)

    @property
    def latency_samples(self) -> int:
        return self.stream.latency_samples

    def push(self, tokens: str | int | Iterable[str] | Iterable[int] | Tensor, /) -> Tensor:
        """NeuTTS text (``<|speech_N|>`` tokens) or vocabulary ids → the audio now final."""
        codes = parse_neutts([tokens] if isinstance(tokens, str) else [tokens] if isinstance(tokens, int) else tokens, id_offset=self.id_offset)
        if not codes:
            return self.model.empty_audio(1)
        return self.stream.push(torch.tensor(codes, dtype=torch.long, device=self.model.device)[None, None])

    def flush(self) -> Tensor:
        return self.stream.flush()
