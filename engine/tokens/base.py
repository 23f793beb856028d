"""The typed seam of the token adapters: what turns a TTS language model's token ids into audio.

:class:`TokenDecoder` is what :class:`~codecstream.tokens.player.TokenPlayer` and ``codecstream
tts-play`` take: :class:`~codecstream.tokens.OrpheusDecoder`, :class:`~codecstream.tokens.BarkDecoder`,
:class:`~codecstream.tokens.NeuTTSDecoder`, :class:`~codecstream.tokens.remote.RemoteTokenDecoder`
or any object with the same members. :class:`TokenAdapter` adds the two steps a server-side
decode needs from the adapter (validating and splitting tokens into codes, checking the end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, Union

from torch import Tensor

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["TokenIds", "TokenDecoder", "TokenAdapter"]

#: Token ids as a language model hands them over: one id, a sequence of ids, or a tensor of ids.
TokenIds = Union[int, Sequence[int], Tensor]


class TokenDecoder(Protocol):
    """Token ids in, ``[1, channels, n]`` audio out as soon as it is final."""

    @property
    def model(self) -> "Codec":
        """The codec whose decoder makes the audio (its ``sample_rate`` is the audio's)."""
        ...

    @property
    def latency_samples(self) -> int:
        """Samples of audio held back after the tokens that determine them have arrived."""
        ...

    def push(self, tokens: TokenIds, /) -> Tensor:
        """Take ``tokens``; return the audio they complete (possibly empty)."""
        ...

    def flush(self) -> Tensor:
        """End the utterance; return the rest of the audio."""
        ...


class TokenAdapter(TokenDecoder, Protocol):
    """A local token decoder that can also stop short of decoding: what
    :class:`~codecstream.tokens.remote.RemoteTokenDecoder` wraps to decode on a server."""

    def codes_for(self, tokens: TokenIds, /) -> Any:
        """Validate ``tokens`` and return the codes they complete, as the model's decoder takes
        them (or None when they complete none)."""
        ...

    def check_end(self) -> None:
        """Raise :class:`~codecstream.StreamStateError` if the utterance ended mid-frame."""
        ...
