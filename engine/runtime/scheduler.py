"""Ticks for many streams: one :class:`~codecstream.groups.StreamGroup` per model, side and
shared options, and *lanes* (one per session or voice) that move data between them.

A lane is a :class:`~codecstream.runtime.transcoder.Transcoder` whose streams live in groups:
its pushes only queue input. :meth:`GroupScheduler.tick` then computes every group, encoder
groups first, hands each lane's fresh codes to its decoder stream, computes the decoder groups
and gives each lane's new output to its ``deliver`` callback::

    tick:  encoder groups ─▶ lanes pump codes ─▶ decoder groups ─▶ lanes deliver output

Everything runs on the thread that calls :meth:`tick` (the server's compute thread): each tick
runs each group the ticks one period needs plus one (a block covers a tick); streams behind take
several blocks in one longer step, and a session that sends faster than real time is bounded by
the server's backlog limit (past it, the server stops reading that client).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Hashable

from ..groups import StreamGroup, group_unit_frames

if TYPE_CHECKING:
    from ..plugin import Codec
    from .transcoder import Transcoder

__all__ = ["GroupScheduler"]

log = logging.getLogger("codecstream.scheduler")


class GroupScheduler:
    """Groups keyed by model, side and shared options; lanes that feed them.

    Args:
        tick_ms: how often :meth:`due` says a tick is wanted (the most a block waits).
    """

    def __init__(self, tick_ms: float = 20.0) -> None:
        if not tick_ms > 0:
            raise ValueError(f"tick_ms must be positive, got {tick_ms}")
        self.tick_s = tick_ms / 1000.0
        self.groups: dict[Hashable, StreamGroup] = {}
        self.lanes: list["Transcoder"] = []
        self._next = time.perf_counter()
        self.ticks = 0
        self.busy_s = 0.0

    # -- groups ---------------------------------------------------------------------------
    def group(self, model: "Codec", side: str, options: dict[str, Any]) -> StreamGroup:
        """The group for ``model``'s ``side`` with these shared options (made on first use)."""
        key = (id(model), side, tuple(sorted(options.items())))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = StreamGroup(model, side, options=options, block_frames=self.block_frames(model))  # type: ignore[arg-type]
        return group

    def block_frames(self, model: "Codec") -> int:
        """Frames per block: the fewest whole units that cover a tick period. Each block costs
        one read of every weight, so blocks shorter than a tick would cost more ticks' compute
        without lowering latency (a block waits for its tick anyway)."""
        unit = group_unit_frames(model)
        unit_s = unit * model.hop_length / model.sample_rate
        return unit * max(1, math.ceil(self.tick_s / unit_s - 1e-9))

    def add(self, lane: "Transcoder") -> None:
        self.lanes.append(lane)

    def remove(self, lane: "Transcoder") -> None:
        if lane in self.lanes:
            self.lanes.remove(lane)  # an empty group stays: it holds no state, only its figures

    # -- ticks ----------------------------------------------------------------------------
    def wait_s(self) -> float:
        """Seconds until the next tick is due (0: now)."""
        return max(0.0, self._next - time.perf_counter())

    def due(self) -> bool:
        return time.perf_counter() >= self._next

    def tick(self) -> int:
        """Compute every block queued in every group, encoders first; deliver the outputs.
        Returns the stream-blocks computed."""
        started = time.perf_counter()
        self._next = started + self.tick_s
        rows = 0
        for group in [g for g in self.groups.values() if g.side == "encoder"]:
            rows += self._run(group)
        for lane in self.lanes:
            lane.pump()
        for group in [g for g in self.groups.values() if g.side == "decoder"]:
            rows += self._run(group)
        for lane in list(self.lanes):
            lane.deliver_output()
        self.ticks += 1
        spent = time.perf_counter() - started
        self.busy_s += spent
        if spent > 5 * self.tick_s:
            log.warning("a tick took %.0f ms (period %.0f ms): %s", 1000 * spent, 1000 * self.tick_s,
                        "; ".join(f"{g.model.name} {g.side} {len(g)} streams in {g.cohorts} batches" for g in self.groups.values() if len(g)))
        return rows

    def _run(self, group: StreamGroup) -> int:
        """The group ticks one period needs plus one. A stream behind takes up to the group's
        ``max_blocks`` per tick, in one longer step (fewer weight reads per second of audio:
        what lets a loaded server's lag settle instead of grow); the backlog a client may build
        is bounded by the server's ``max_backlog_ms``."""
        rows = 0
        for _ in range(math.ceil(self.tick_s / group.block_s) + 1):
            report = group.tick()
            if not report.rows:
                break
            rows += report.rows
        return rows

    def stats(self) -> list[dict[str, Any]]:
        """Per group: streams, batch size, tick compute p50 / p99, and the input its streams
        hold not yet computed (lag, ms) now: the mean and the largest."""
        out = []
        for group in self.groups.values():
            stats = group.stats()
            rate = group.model.sample_rate if group.side == "encoder" else group.model.frame_rate
            backlog_ms = [1000.0 * s.queued / rate for s in group.streams]
            stats["lag_mean_ms"] = sum(backlog_ms) / len(backlog_ms) if backlog_ms else 0.0
            stats["lag_max_ms"] = max(backlog_ms, default=0.0)
            out.append(stats)
        return out


#: A lane's output callback: codes or ``[n, channels]`` audio, as the transcoder returns them.
Deliver = Callable[[Any], None]
