"""Many streams of one model in one forward pass: stream groups computed in ticks.

Each stream alone re-reads all of a model's weights for every small chunk; a group stacks the
streams that have a block ready into the batch dimension and computes them in one call. Every
stream's output is what it would have been alone, and so what the offline model gives: each
row keeps its own state (:class:`~codecstream.streaming.StreamState` fields are per row), and
rows are only computed together when their state has one *phase*
(:meth:`~codecstream.streaming.StreamContext.phase`: equal buffer shapes and start-up
counters; positions, seeds and conditions may differ per row).

How a tick works::

    members  ──push──▶ queues (audio samples or code frames, per member)
    tick():  for each cohort (rows of one phase, one context):
                 rows with a whole block queued ─▶ select ─▶ one step ─▶ assign back
             cohorts that reached one phase merge (new streams join the steady batch)
    members  ◀──pull── outputs (codes or audio, per member)

A stream that joins starts in a cohort of its own (its start-up differs), and merges into
the steady batch once its phase matches, typically after its first block or two. ``flush``
takes the member's row out into an ordinary stream, which ends it exactly as a solo stream
ends. A group is driven by one thread (the server's compute thread, or your loop).

Typical use::

    group = cs.StreamGroup(model, "encoder", options={"bandwidth": 6.0})
    streams = [group.open() for _ in range(16)]
    for chunks in ...:                       # each stream's next chunk, any length
        for stream, chunk in zip(streams, chunks):
            stream.push(chunk)
        group.tick()                         # one forward pass for every ready stream
        codes = [stream.pull() for stream in streams]
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Literal

import numpy as np
import torch

from .errors import OptionError, StreamStateError
from .streaming import StreamContext
from .streams import DecoderStream, EncoderStream

if TYPE_CHECKING:
    from .plugin import Codec

__all__ = ["StreamGroup", "GroupStream", "TickReport", "group_unit_frames"]

Side = Literal["encoder", "decoder"]


def group_unit_frames(model: "Codec") -> int:
    """The fewest code frames (of the finest level) a group block can hold: one frame of
    every code level (SNAC 24 kHz: 4 finest frames, one coarsest code)."""
    unit = 1
    if model.token_spec is not None:
        for level in model.token_spec.levels:
            unit = math.lcm(unit, max(1, level.hop_length // model.hop_length))
    return unit


@dataclass
class TickReport:
    """What one :meth:`StreamGroup.tick` did."""

    rows: int  # streams computed
    calls: int  # forward passes (one per cohort that had ready rows)
    compute_ms: float  # wall time of the tick
    blocks: int = 0  # the most blocks one stream took in this tick


@dataclass(eq=False)
class _Cohort:
    """Rows of one phase in one context, in the order of ``members``."""

    ctx: StreamContext
    members: list["GroupStream"]
    layout: Hashable = None  # the decoder input layout these rows share (None before input)
    started: bool = False  # stepped at least once (its options are in its rows' states)
    _phase: Hashable = field(default=None, repr=False)

    def phase(self) -> Hashable:
        if self._phase is None:
            self._phase = self.ctx.phase()
        return self._phase


class GroupStream:
    """One stream in a :class:`StreamGroup`: ``push`` queues input, the group's ticks compute
    it, ``pull`` returns what is final. ``flush`` ends it exactly as a solo stream ends."""

    def __init__(self, group: "StreamGroup", options: Any, option_values: dict[str, Any]) -> None:
        self.group = group
        self.options = options  # parsed, as the model's parts read them
        self.option_values = option_values
        self._queue: list[Any] = []
        self.queued = 0  # samples (encoder) or code frames (decoder) waiting for a tick
        self._outputs: list[Any] = []
        self.consumed = 0  # samples or frames computed so far
        self.produced = 0  # code frames or audio samples computed so far
        self._layout: Hashable = None
        self._layout_set = False
        self._closed = False

    # -- properties ------------------------------------------------------------------------
    @property
    def side(self) -> Side:
        return self.group.side

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of a solo stream plus what the group's block adds."""
        return self.group.latency_samples

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.group.model.sample_rate

    @property
    def closed(self) -> bool:
        return self._closed

    # -- input / output -------------------------------------------------------------------
    def push(self, data: Any) -> None:
        """Queue audio ``[1, C, n]`` (encoder) or codes of one row (decoder); checked now,
        computed by the group's next ticks."""
        self._check_open("push")
        model = self.group.model
        if self.side == "encoder":
            audio = model.check_audio(data, 1)
            if audio.shape[-1]:
                self._queue.append(audio)
                self.queued += audio.shape[-1]
            return
        codes = model.check_codes(data, 1)
        frames = model.num_frames(codes)
        layout = model.code_layout(codes)
        if frames == 0 and not _has_codes(model, codes):
            return  # nothing at all (a level's codes short of a frame are kept below)
        if not self._layout_set:
            self._layout, self._layout_set = layout, True
        elif layout != self._layout:
            raise StreamStateError(
                f"code layout changed mid-stream ({self._layout} then {layout}); open a new stream to change it"
            )
        self._queue.append(codes)
        self.queued = model.num_frames(model.concat_codes(self._queue)) if len(self._queue) > 1 else frames

    def pull(self) -> Any:
        """What the ticks since the last pull computed: codes ``[1, ...]`` or audio ``[1, C, n]``
        (possibly empty)."""
        return self._joined(self._outputs, clear=True)

    def flush(self) -> Any:
        """End the stream: its row leaves the group, the rest of its input is computed and its
        end padded as the offline model pads it. Returns everything not pulled yet."""
        self._check_open("flush")
        stream = self.group._detach(self)
        parts = self._outputs
        self._outputs = []
        if self._queue:  # all of it: a decoder's codes short of a frame too (the stream judges them)
            model = self.group.model
            pending = torch.cat(self._queue, dim=-1) if self.side == "encoder" else model.concat_codes(self._queue)
            self._queue, self.queued = [], 0
            parts.append(stream.push(pending))
        parts.append(stream.flush())
        self._closed = True
        return self._joined(parts, clear=False)

    def close(self) -> None:
        """Leave the group without flushing (a client that went away)."""
        if not self._closed:
            self.group._detach(self)
            self._closed = True
            self._queue, self._outputs = [], []

    def __enter__(self) -> "GroupStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for the group --------------------------------------------------------------------
    def _take(self, count: int) -> Any:
        """The first ``count`` queued samples or frames."""
        model = self.group.model
        if self.side == "encoder":
            audio = self._queue[0] if len(self._queue) == 1 else torch.cat(self._queue, dim=-1)
            block, rest = audio[..., :count], audio[..., count:]
            self._queue = [rest] if rest.shape[-1] else []
            self.queued = rest.shape[-1]
            return block
        codes = self._queue[0] if len(self._queue) == 1 else model.concat_codes(self._queue)
        total = model.num_frames(codes)
        block = model.slice_codes(codes, 0, count)
        rest = model.slice_codes(codes, count, max(total, count) + _longest(model, codes))
        self._queue = [rest] if _has_codes(model, rest) else []
        self.queued = total - count
        return block

    def _joined(self, parts: list[Any], *, clear: bool) -> Any:
        model = self.group.model
        if clear:
            self._outputs = []
        if self.side == "encoder":
            parts = [p for p in parts if p is not None and model.num_frames(p)]
            return model.concat_codes(parts) if parts else model.empty_codes(1, self.options)
        parts = [p for p in parts if p is not None and p.shape[-1]]
        return torch.cat(parts, dim=-1) if parts else model.empty_audio(1)

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise StreamStateError(f"cannot {action}: the stream has left its group (flushed or closed)")


def _longest(model: "Codec", codes: Any) -> int:
    """An end index past every level's last code (slices are in finest frames)."""
    return max(int(a.shape[-1]) for a in model.codes_to_arrays(codes)) * group_unit_frames(model)


def _has_codes(model: "Codec", codes: Any) -> bool:
    return any(a.shape[-1] for a in model.codes_to_arrays(codes))


class StreamGroup:
    """Streams of one model and side computed together, one block per ready stream per tick.

    Args:
        model: an exactly streaming model (a windowed decoder re-decodes a window of context
            per push, which a group would compute again per row for nothing; it is refused).
        side: ``"encoder"`` (audio → codes) or ``"decoder"`` (codes → audio).
        options: the model's options for this side (EnCodec: ``bandwidth``), shared by every
            stream; options the model lists in ``row_options`` (SNAC's ``noise_seed``) may
            also be given per stream to :meth:`open`.
        block_frames: code frames per stream per tick (a multiple of
            :func:`group_unit_frames`; default: the unit, the lowest latency).
        max_blocks: the most blocks a row takes in one step when every ready row of its
            batch has that many queued (streams catching up on a backlog).
        history: ticks kept for the compute-time percentiles.
    """

    def __init__(
        self,
        model: "Codec",
        side: Side,
        *,
        options: dict[str, Any] | None = None,
        block_frames: int | None = None,
        max_blocks: int = 8,
        history: int = 2000,
    ) -> None:
        if side not in ("encoder", "decoder"):
            raise OptionError(f"side must be 'encoder' or 'decoder', got {side!r}")
        if side == "encoder" and not (model.has_encoder and model.streaming_encoder):
            raise OptionError(f"{model.name} has no streaming encoder to group")
        if side == "decoder" and not model.exact_decoder:
            raise OptionError(
                f"{model.name} decodes in windows (each push re-decodes its context offline); "
                "stream groups serve exactly streaming decoders"
            )
        self.model = model
        self.side: Side = side
        self.option_values = dict(options or {})
        self.options = self._parse(self.option_values)
        unit = group_unit_frames(model)
        block_frames = unit if block_frames is None else int(block_frames)
        if block_frames < 1 or block_frames % unit:
            raise OptionError(f"block_frames must be a positive multiple of {unit} for {model.name}, got {block_frames}")
        self.block_frames = block_frames
        self.max_blocks = max(1, int(max_blocks))
        if side == "encoder":
            self.block = math.lcm(model.encoder_block, block_frames * model.hop_length)
        else:
            self.block = block_frames
        self._cohorts: list[_Cohort] = []
        self._solo_latency: int | None = None
        self.tick_ms: deque[float] = deque(maxlen=history)
        self.batch_sizes: deque[int] = deque(maxlen=history)
        self.ticks = 0

    # -- streams --------------------------------------------------------------------------
    def open(self, **row_options: Any) -> GroupStream:
        """A new stream in this group. ``row_options``: options the model applies per row
        (``model.row_options``), such as SNAC's ``noise_seed``."""
        allowed = set(self.model.row_options)
        unknown = sorted(set(row_options) - allowed)
        if unknown:
            raise OptionError(
                f"{self.model.name} takes {unknown} per group, not per stream"
                + (f" (per stream: {sorted(allowed)})" if allowed else "")
            )
        values = {**self.option_values, **row_options}
        stream = GroupStream(self, self._parse(values) if row_options else self.options, values)
        cohort = _Cohort(StreamContext(1, stream.options), [stream])
        self._cohorts.append(cohort)
        return stream

    @property
    def streams(self) -> list[GroupStream]:
        return [m for c in self._cohorts for m in c.members]

    def __len__(self) -> int:
        return sum(len(c.members) for c in self._cohorts)

    @property
    def cohorts(self) -> int:
        """Batches the streams are in now (1 when every stream is steady)."""
        return len(self._cohorts)

    @property
    def block_s(self) -> float:
        """Audio one block holds, in seconds."""
        samples = self.block if self.side == "encoder" else self.block * self.model.hop_length
        rate = self.model.encoder_sample_rate if self.side == "encoder" else self.model.sample_rate
        return samples / rate

    @property
    def solo_latency_samples(self) -> int:
        """The algorithmic latency of one of these streams alone (no block waiting)."""
        if self._solo_latency is None:
            self._solo_latency = self._solo_stream(self.options).latency_samples
        return self._solo_latency

    @property
    def latency_samples(self) -> int:
        """A solo stream's algorithmic latency plus what waiting for whole blocks adds: the
        encoder waits for ``block_frames`` frames of audio where a solo stream needs one unit;
        the decoder for ``block_frames`` frames of codes where a solo stream can start on one."""
        waited = self.block_frames - (group_unit_frames(self.model) if self.side == "encoder" else 1)
        return self.solo_latency_samples + waited * self.model.hop_length

    # -- ticks ----------------------------------------------------------------------------
    def ready(self) -> int:
        """Streams with a whole block queued."""
        return sum(1 for c in self._cohorts for m in c.members if m.queued >= self.block)

    def tick(self, max_blocks: int | None = None) -> TickReport:
        """Compute every stream that has a block queued (one block, or up to ``max_blocks``
        (default: the group's) when all ready rows of its batch are behind): one forward pass
        per cohort."""
        start = time.perf_counter()
        rows = calls = blocks = 0
        limit = self.max_blocks if max_blocks is None else max(1, min(self.max_blocks, max_blocks))
        with torch.inference_mode():
            self._gather_new()
            for cohort in list(self._cohorts):
                ready = [i for i, m in enumerate(cohort.members) if m.queued >= self.block]
                if not ready:
                    continue
                rows += len(ready)
                calls += 1
                blocks = max(blocks, self._step(cohort, ready, limit))
            if calls:
                self._merge_cohorts()
        if calls:
            self.ticks += 1
            self.tick_ms.append(1000.0 * (time.perf_counter() - start))
            self.batch_sizes.append(rows)
        return TickReport(rows, calls, 1000.0 * (time.perf_counter() - start), blocks)

    def run(self) -> int:
        """Tick until no stream has a whole block queued; returns the ticks run."""
        count = 0
        while self.tick().rows:
            count += 1
        return count

    def stats(self) -> dict[str, Any]:
        """Streams, cohorts, ticks, batch size and tick compute p50 / p99 (ms) so far."""
        ticks = np.asarray(self.tick_ms, dtype=np.float64)
        sizes = np.asarray(self.batch_sizes, dtype=np.float64)
        return {
            "model": self.model.name,
            "side": self.side,
            "streams": len(self),
            "cohorts": self.cohorts,
            "ticks": self.ticks,
            "block_samples": self.block if self.side == "encoder" else self.block * self.model.hop_length,
            "batch_mean": float(sizes.mean()) if sizes.size else 0.0,
            "tick_p50_ms": float(np.percentile(ticks, 50)) if ticks.size else 0.0,
            "tick_p99_ms": float(np.percentile(ticks, 99)) if ticks.size else 0.0,
        }

    # -- internals ------------------------------------------------------------------------
    def _parse(self, values: dict[str, Any]) -> Any:
        if self.side == "encoder":
            return self.model.encoder_options(**values)
        return self.model.decoder_options(**values)

    def _solo_stream(self, options: Any) -> EncoderStream | DecoderStream:
        if self.side == "encoder":
            return EncoderStream(self.model, 1, options=options)
        return DecoderStream(self.model, 1, options=options)

    def _gather_new(self) -> None:
        """Streams that have not started and have a block ready start as one batch per set of
        options (streams that join in one tick share their first forward pass)."""
        fresh: dict[Hashable, list[_Cohort]] = {}
        for cohort in self._cohorts:
            if not cohort.started and cohort.members[0].queued >= self.block:
                fresh.setdefault(_key(cohort.ctx.options), []).append(cohort)
        for group in fresh.values():
            if len(group) < 2:
                continue
            members = [m for c in group for m in c.members]
            self._cohorts = [c for c in self._cohorts if c not in group]
            self._cohorts.append(_Cohort(StreamContext(len(members), group[0].ctx.options), members))

    def _step(self, cohort: _Cohort, ready: list[int], limit: int) -> int:
        """One forward pass for the ``ready`` rows of ``cohort``; returns the blocks each took."""
        model = self.model
        members = [cohort.members[i] for i in ready]
        # Rows that fell behind catch up in longer steps: every ready row takes as many whole
        # blocks as the least of them holds (up to the limit), so a backlog costs fewer
        # weight reads per second of audio, as a solo stream's longer pushes do.
        taken = min(limit, *(m.queued // self.block for m in members))
        count = taken * self.block
        blocks = [m._take(count) for m in members]
        everyone = len(ready) == len(cohort.members)
        before = None if everyone or not cohort.started else cohort.phase()
        ctx = cohort.ctx if everyone else cohort.ctx.select(ready)
        with torch.inference_mode():
            if self.side == "encoder":
                out = model.encoder_step(torch.cat(blocks) if len(blocks) > 1 else blocks[0], ctx)
            else:
                if cohort.layout is None:
                    cohort.layout = model.code_layout(blocks[0])
                out = model.decoder_step(_stack_codes(model, blocks), ctx)
        for row, member in enumerate(members):
            piece = _row_codes(model, out, row) if self.side == "encoder" else out[row : row + 1]
            member._outputs.append(piece)
            member.consumed += count
            member.produced += model.num_frames(piece) if self.side == "encoder" else piece.shape[-1]
        if everyone:
            cohort._phase = None
            cohort.started = True
            return taken
        after = ctx.phase()
        if before is not None and after == before:  # the stepped rows stayed in the cohort's phase
            cohort.ctx = cohort.ctx.assign(ready, ctx)
            return taken
        rest = [i for i in range(len(cohort.members)) if i not in set(ready)]
        self._cohorts.append(_Cohort(ctx, members, cohort.layout, True, after))
        cohort.ctx = cohort.ctx.select(rest)
        cohort.members = [cohort.members[i] for i in rest]
        return taken

    def _merge_cohorts(self) -> None:
        """Cohorts of one phase (and decoder layout) become one batch."""
        if len(self._cohorts) < 2:
            return
        row_options = bool(self.model.row_options)
        buckets: dict[Hashable, list[_Cohort]] = {}
        kept: list[_Cohort] = []
        for cohort in self._cohorts:
            if not cohort.started:
                kept.append(cohort)  # options not yet applied to its rows' states
                continue
            options_key = None if row_options else _key(cohort.ctx.options)
            buckets.setdefault((cohort.layout, options_key, cohort.phase()), []).append(cohort)
        for group in buckets.values():
            if len(group) == 1:
                kept.append(group[0])
                continue
            ctx = StreamContext.merge([c.ctx for c in group], options=self.options, rows_hold_options=row_options)
            merged = _Cohort(ctx, [m for c in group for m in c.members], group[0].layout, True, group[0].phase())
            kept.append(merged)
        kept.sort(key=lambda c: -len(c.members))  # the steady batch first
        self._cohorts = kept

    def _detach(self, member: GroupStream) -> EncoderStream | DecoderStream:
        """Take ``member``'s row out of its cohort as a solo stream at the same point."""
        for cohort in self._cohorts:
            if member in cohort.members:
                break
        else:
            raise StreamStateError("this stream is not in the group")
        index = cohort.members.index(member)
        stream = self._solo_stream(member.options)
        if cohort.started:
            stream._ctx = cohort.ctx.select([index])
            stream._ctx.options = member.options
        if len(cohort.members) == 1:
            self._cohorts.remove(cohort)
        else:
            cohort.ctx = cohort.ctx.drop([index]) if cohort.started else StreamContext(len(cohort.members) - 1, cohort.ctx.options)
            cohort.members.pop(index)
            cohort._phase = None
        if isinstance(stream, EncoderStream):
            stream.samples_in = member.consumed
            stream.frames_out = member.produced
        else:
            stream.samples_out = member.produced
            stream._layout, stream._layout_set = member._layout, member._layout_set
        return stream


def _key(options: Any) -> Hashable:
    try:
        hash(options)
        return options  # type: ignore[no-any-return]
    except TypeError:
        return repr(options)


def _stack_codes(model: "Codec", blocks: list[Any]) -> Any:
    if len(blocks) == 1:
        return blocks[0]
    levels = [model.codes_to_arrays(b) for b in blocks]
    return model.codes_from_arrays([torch.cat([lv[i] for lv in levels]) for i in range(len(levels[0]))])


def _row_codes(model: "Codec", codes: Any, row: int) -> Any:
    arrays = model.codes_to_arrays(codes)
    if arrays[0].shape[0] == 1:
        return codes
    return model.codes_from_arrays([a[row : row + 1] for a in arrays])

