"""One client's streams on a shared model: wire data in, wire messages out, in bounded turns.

A session checks everything a client controls before any compute: its options against the
model's schema (:mod:`codecstream.options`), the audio duration or code frames of each message
against :class:`SessionLimits`. It then works through a message in *turns* of at most
``turn_ms`` of audio, so the compute thread can serve other sessions between two turns of a
long message (see :class:`~codecstream.server.app.ComputeWorker`).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import CodecStreamError
from ..options import WINDOWED_OPTIONS, check_options
from ..runtime.transcoder import Transcoder
from .protocol import Hello, Protocol, ProtocolError, Ready

if TYPE_CHECKING:
    from ..plugin import Codec
    from ..runtime.scheduler import GroupScheduler

__all__ = ["Session", "SessionLimits", "codes_to_wire", "codes_from_wire", "wire_form", "Outgoing"]

#: What a session hands back to the event loop: encoded messages, plus the client-rate audio of
#: audio messages for the recorder (None for codes).
Outgoing = list[tuple[bytes, "np.ndarray | None"]]


@dataclass(frozen=True)
class SessionLimits:
    """Bounds on the work one message may cause.

    Attributes:
        max_message_ms: audio per message (client-rate samples for audio, code frames at each
            level's frame rate for codes), in milliseconds.
        turn_ms: audio computed in one turn of the compute thread, in milliseconds.
        max_message_bytes: size of every message sent (longer outputs are split).
    """

    max_message_ms: float = 1000.0
    turn_ms: float = 100.0
    max_message_bytes: int = 256 * 1024


def wire_form(model: "Codec") -> str | None:
    """How ``model``'s codes travel in CODES messages: ``"tensor"`` (one ``[rows, frames]``
    level: code-books or feature channels), ``"levels"`` (one ``[1, frames]`` level per code
    level, SNAC) or None (codes the protocol cannot carry, such as EnCodec 48 kHz segments)."""
    empty = model.empty_codes(1, model.encoder_options())
    if isinstance(empty, Tensor):
        return "tensor"
    if isinstance(empty, (list, tuple)) and all(isinstance(level, Tensor) for level in empty):
        return "levels"
    return None


def codes_to_wire(codes: Any) -> list[np.ndarray]:
    """A model's codes for batch item 0 as protocol levels: a tensor ``[1, K, T]`` becomes one
    ``[K, T]`` level; a list of ``[1, T_l]`` tensors (SNAC) one ``[1, T_l]`` level each."""
    if isinstance(codes, (list, tuple)):
        return [level[0].detach().cpu().numpy()[None] for level in codes]
    return [codes[0].detach().cpu().numpy()]


def codes_from_wire(model: "Codec", levels: list[np.ndarray], form: str | None = None) -> Any:
    """Protocol levels → what the model's decoder takes (the model validates the values)."""
    form = form or wire_form(model)
    tensors = [torch.from_numpy(np.array(level)) for level in levels]
    if form == "levels":
        if any(t.shape[0] != 1 for t in tensors):
            raise ProtocolError("bad_codes", f"{model.name} codes are one row per level")
        return [t.reshape(1, -1) if t.is_floating_point() else t.reshape(1, -1).long() for t in tensors]
    if form != "tensor":
        raise ProtocolError("bad_codes", f"{model.name}'s codes cannot travel in CODES messages")
    if len(tensors) != 1:
        raise ProtocolError("bad_codes", f"{model.name} takes one level of codes, got {len(tensors)}")
    return tensors[0][None] if tensors[0].is_floating_point() else tensors[0][None].long()


def _split_options(model: "Codec", options: dict[str, Any], direction: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hello's options, type- and range-checked, split into encoder and decoder options."""
    schema = (*model.option_specs(), *WINDOWED_OPTIONS)
    try:
        checked = check_options(schema, options, what=model.name)
    except CodecStreamError as exc:
        raise ProtocolError("bad_options", str(exc)) from None
    sides = {option.name: option.side for option in schema}
    encoder = {k: v for k, v in checked.items() if sides[k] == "encoder"}
    decoder = {k: v for k, v in checked.items() if sides[k] == "decoder"}
    if direction == "codes->audio" and encoder:
        raise ProtocolError("bad_options", f"options {sorted(encoder)} apply to the encoder; this session only decodes")
    if direction == "audio->codes" and decoder:
        raise ProtocolError("bad_options", f"options {sorted(decoder)} apply to the decoder; this session only encodes")
    return encoder, decoder


def _groupable(model: "Codec", direction: str, decoder_options: dict[str, Any]) -> bool:
    """Whether a session's streams can be computed in stream groups: an exact decoder (and a
    streaming encoder when it encodes), not the windowed mode."""
    if direction != "audio->codes" and (not model.exact_decoder or decoder_options.get("mode", "exact") != "exact"):
        return False
    if any(name in decoder_options for name in ("lookahead_frames", "context_frames", "block_frames", "crossfade_frames")):
        return False  # the solo streams raise their documented error for these
    return direction == "codes->audio" or (model.has_encoder and model.streaming_encoder)


class Session:
    """Streams for one connection. Build it, and call ``ready``, ``process_*`` and ``finish``,
    on the compute thread: the streams' work and their latency figures are computed there.
    ``process_audio`` and ``process_codes`` return iterators of turns, each turn a list of
    :data:`Outgoing` messages (the worker interleaves turns of different sessions)."""

    def __init__(
        self, model: "Codec", hello: Hello, protocol: Protocol, limits: SessionLimits | None = None,
        scheduler: "GroupScheduler | None" = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.model = model
        self.hello = hello
        self.protocol = protocol
        self.limits = limits or SessionLimits()
        self.direction = hello.direction
        self.form = wire_form(model)
        if self.form is None and self.direction != "audio->audio":
            raise ProtocolError("bad_hello", f"{model.name}'s codes cannot travel in CODES messages; use direction audio->audio")
        if self.direction != "codes->audio" and not (model.has_encoder and model.streaming_encoder):
            raise ProtocolError("bad_hello", f"{model.name} has no streaming encoder; use direction codes->audio")
        encoder_options, decoder_options = _split_options(model, hello.options, self.direction)
        self.grouped = scheduler is not None and _groupable(model, self.direction, decoder_options)
        if self.grouped:
            decoder_options.pop("mode", None)
        #: With a scheduler: called on the compute thread with each tick's messages.
        self.deliver: Callable[[Outgoing], None] | None = None
        try:
            self.transcoder = Transcoder(
                model, self.direction, input_rate=hello.sample_rate, input_channels=hello.channels,
                encoder_options=encoder_options, decoder_options=decoder_options, trim_to_input=True,
                scheduler=scheduler if self.grouped else None, deliver=self._tick_output,
            )
        except CodecStreamError as exc:
            raise ProtocolError("bad_options", f"{type(exc).__name__}: {exc}") from None
        self.audio_in_s = 0.0
        # Codes: each level's frames so far, in finest frames, so levels cannot drift apart.
        self._strides = self._level_strides()
        self._level_frames = [0] * len(self._strides)

    def _level_strides(self) -> list[int]:
        spec = self.model.token_spec
        if self.form != "levels" or spec is None:
            return [1]
        finest = min(level.hop_length for level in spec.levels)
        return [level.hop_length // finest for level in spec.levels]

    # -- limits ---------------------------------------------------------------------------
    def max_message_samples(self) -> int:
        """Client-rate audio samples one message may carry."""
        return max(1, int(self.limits.max_message_ms * self.hello.sample_rate / 1000))

    def max_message_frames(self) -> int:
        """Code frames (of the finest level) one message may carry."""
        return max(1, math.ceil(self.limits.max_message_ms * self.model.frame_rate / 1000))

    def _turn_samples(self) -> int:
        return max(1, int(self.limits.turn_ms * self.hello.sample_rate / 1000))

    def _turn_frames(self) -> int:
        return max(1, math.ceil(self.limits.turn_ms * self.model.frame_rate / 1000))

    def ready(self) -> Ready:
        latency = self.transcoder.latency_ms
        spec = self.model.token_spec
        levels = [] if spec is None else [
            {"codebooks": level.num_codebooks, "codebook_size": level.codebook_size, "frame_rate": level.frame_rate}
            for level in spec.levels
        ]
        return Ready(
            model=self.model.name, direction=self.direction, sample_rate=self.hello.sample_rate,
            model_sample_rate=self.model.sample_rate, frame_rate=self.model.frame_rate, latency_ms=latency,
            code_levels=levels, session=self.id,
        )

    # -- compute thread -------------------------------------------------------------------
    def process_audio(self, samples: np.ndarray) -> Iterator[Outgoing]:
        """``samples``: ``[n, channels]`` float32 at the client's rate."""
        if self.direction == "codes->audio":
            raise ProtocolError("unexpected", "this session decodes codes; it takes no audio")
        if len(samples) > self.max_message_samples():
            raise ProtocolError("too_large", f"an audio message may carry {self.max_message_samples()} samples ({self.limits.max_message_ms:g} ms), got {len(samples)}")
        return self._audio_turns(samples)

    def _audio_turns(self, samples: np.ndarray) -> Iterator[Outgoing]:
        step = self._turn_samples()
        for start in range(0, max(1, len(samples)), step):
            piece = samples[start : start + step]
            self.audio_in_s += len(piece) / self.hello.sample_rate
            out: Outgoing = []
            self._send(self.transcoder.push_audio(piece), out)
            yield out

    def process_codes(self, levels: list[np.ndarray]) -> Iterator[Outgoing]:
        if self.direction != "codes->audio":
            raise ProtocolError("unexpected", f"this session is {self.direction}; it takes no codes")
        if len(levels) != len(self._strides):
            raise ProtocolError("bad_codes", f"{self.model.name} codes have {len(self._strides)} level(s), got {len(levels)}")
        if any(not np.isfinite(level).all() for level in levels if level.dtype.kind == "f"):
            raise ProtocolError("bad_codes", "codes contain NaN or infinite values")
        frames = [level.shape[1] * stride for level, stride in zip(levels, self._strides)]
        if max(frames) > self.max_message_frames():
            raise ProtocolError("too_large", f"a codes message may carry {self.max_message_frames()} frames ({self.limits.max_message_ms:g} ms), got {max(frames)}")
        totals = [done + new for done, new in zip(self._level_frames, frames)]
        if max(totals) - min(totals) > self.max_message_frames():  # a level running ahead is buffered
            raise ProtocolError("bad_codes", f"code levels drifted apart by {max(totals) - min(totals)} frames; send every level together")
        codes = codes_from_wire(self.model, levels, self.form)  # checked before any turn runs
        self.model.check_codes(codes, 1)
        self._level_frames = totals
        return self._codes_turns(levels, max(frames))

    def _codes_turns(self, levels: list[np.ndarray], frames: int) -> Iterator[Outgoing]:
        step = self._turn_frames()
        pieces = max(1, -(-frames // step))
        for index in range(pieces):  # each level sliced in proportion: pushes may be any length
            part = [level[:, level.shape[1] * index // pieces : level.shape[1] * (index + 1) // pieces] for level in levels]
            codes = codes_from_wire(self.model, part, self.form)
            out: Outgoing = []
            self._send(self.transcoder.push_codes(codes), out)
            self.audio_in_s += self.model.num_frames(codes) * self.model.hop_length / self.model.sample_rate
            yield out

    def _tick_output(self, result: Any) -> None:
        """A scheduler tick's output for this session, as messages for ``deliver``."""
        out: Outgoing = []
        self._send(result, out)
        if out and self.deliver is not None:
            self.deliver(out)

    @property
    def backlog_s(self) -> float:
        """Input this session has queued in its groups and not computed yet (grouped only)."""
        return self.transcoder.backlog_s if self.grouped else 0.0

    def close(self) -> None:
        """The client went away: leave the groups (nothing more is computed for it)."""
        self.transcoder.close()

    def finish(self) -> Outgoing:
        out: Outgoing = []
        self._send(self.transcoder.finish(), out)
        return out

    def _send(self, result: Any, out: Outgoing) -> None:
        """Encode what the transcoder returned (codes or client-rate audio) as messages."""
        if not isinstance(result, np.ndarray):  # codes
            if self.model.num_frames(result):
                out.append((self.protocol.codes(codes_to_wire(result)), None))
            return
        if not len(result):
            return
        width = 2 if self.hello.format == "pcm16" else 4
        per_message = max(1, (self.limits.max_message_bytes - 5) // (width * self.hello.channels))
        for start in range(0, len(result), per_message):
            piece = result[start : start + per_message]
            out.append((self.protocol.audio(piece), piece))
