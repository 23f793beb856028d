"""Many TTS voices, one forward pass: token streams decoded in one stream group.

A TTS server generates several utterances at once; decoding each alone re-reads the codec's
weights per voice. :class:`TokenGroup` decodes them in one
:class:`~codecstream.groups.StreamGroup`: each voice's adapter (Orpheus, Bark) only validates its
tokens and turns them into codes (``codes_for``), and the group's ticks decode every voice with
a block ready in one call. Each voice's audio equals what its adapter gives alone.

    voices = cs.tokens.TokenGroup(snac)
    a = voices.open(OrpheusDecoder(snac), noise_seed=1)
    b = voices.open(OrpheusDecoder(snac), noise_seed=2)
    a.push(ids_a); b.push(ids_b)
    voices.tick()
    audio_a, audio_b = a.pull(), b.pull()

NeuTTS's codec (NeuCodec) decodes in windows and cannot join a group; its adapter decodes alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..groups import GroupStream, StreamGroup, TickReport

if TYPE_CHECKING:
    from ..plugin import Codec
    from .base import TokenAdapter, TokenIds

__all__ = ["TokenGroup", "GroupedVoice"]


class GroupedVoice:
    """One voice of a :class:`TokenGroup`: ``push`` token ids, ``pull`` audio after ticks."""

    def __init__(self, adapter: "TokenAdapter", stream: GroupStream) -> None:
        self.adapter = adapter
        self.stream = stream

    @property
    def latency_samples(self) -> int:
        return self.stream.latency_samples

    def push(self, tokens: "TokenIds") -> None:
        """Validate ``tokens`` (the adapter's errors) and queue the codes they complete."""
        codes = self.adapter.codes_for(tokens)
        if codes is not None:
            self.stream.push(codes)

    def pull(self) -> Tensor:
        """Audio ``[1, channels, n]`` the ticks since the last pull made final."""
        return self.stream.pull()  # type: ignore[no-any-return]

    def flush(self) -> Tensor:
        """End the utterance (mid-frame ends raise, as the adapter does); the rest of the audio."""
        self.adapter.check_end()
        return self.stream.flush()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.stream.close()


class TokenGroup:
    """Voices of one codec decoded together. ``decoder_options`` are shared by every voice
    (SNAC: ``noise``); the model's per-row options (SNAC: ``noise_seed``) go to :meth:`open`."""

    def __init__(self, model: "Codec", *, block_frames: int | None = None, **decoder_options: Any) -> None:
        self.group = StreamGroup(model, "decoder", options=decoder_options, block_frames=block_frames)

    @property
    def model(self) -> "Codec":
        return self.group.model

    def open(self, adapter: "TokenAdapter", **row_options: Any) -> GroupedVoice:
        """A voice whose tokens ``adapter`` splits into codes (its own stream stays unused)."""
        if adapter.model is not self.group.model:
            raise ValueError("the adapter decodes another model than this group's")
        return GroupedVoice(adapter, self.group.open(**row_options))

    def tick(self) -> TickReport:
        """One forward pass for every voice with a block of codes queued."""
        return self.group.tick()

    def run(self) -> int:
        """Tick until no voice has a whole block queued."""
        return self.group.run()
