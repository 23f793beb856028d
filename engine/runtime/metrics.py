"""What a running pipeline reports: latency by component, compute per block, RTF, xruns."""

from __future__ import annotations

import collections
import statistics
import threading
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PipelineMetrics", "MetricsRecorder"]


@dataclass(frozen=True)
class PipelineMetrics:
    """A snapshot. Latencies in ms:

    - ``algorithmic_ms``: the streams' latencies plus the resamplers' filter delays;
    - ``buffering_ms``: a block of input gathered before it is processed, plus the audio waiting
      in the output ring when a block is written (mean);
    - ``compute_ms``: the median time to process a block (output waits for it);
    - ``device_ms``: input plus output latency as the devices report them;
    - ``total_ms``: their sum, the expected end-to-end delay.
    """

    algorithmic_ms: float
    buffering_ms: float
    compute_ms: float
    device_ms: float
    total_ms: float
    block_ms: float
    compute_p50_ms: float
    compute_p99_ms: float
    rtf: float  # compute time / audio time, over the whole run (< 1: keeps up)
    blocks: int
    audio_seconds: float
    input_overflows: int
    output_underruns: int
    late_dropped_ms: float  # late output skipped after underruns, so latency stays put
    device_status_flags: int
    keeping_up: bool

    @property
    def xruns(self) -> int:
        return self.input_overflows + self.output_underruns + self.device_status_flags

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), xruns=self.xruns)

    def status_line(self) -> str:
        state = "real time" if self.keeping_up else "NOT REAL TIME: this machine is too slow for this model"
        return (
            f"latency {self.total_ms:6.1f} ms (model {self.algorithmic_ms:.1f}, buffers {self.buffering_ms:.1f}, "
            f"compute {self.compute_ms:.1f}, device {self.device_ms:.1f}) | RTF {self.rtf:.2f} | "
            f"xruns {self.xruns} | {state}"
        )


class MetricsRecorder:
    """Collected by the worker thread; :meth:`snapshot` may be called from any thread."""

    def __init__(self, window: int = 2000) -> None:
        self._lock = threading.Lock()
        self._compute_s: collections.deque[float] = collections.deque(maxlen=window)
        self._buffered_s: collections.deque[float] = collections.deque(maxlen=window)
        self.total_compute_s = 0.0
        self.audio_seconds = 0.0
        self.blocks = 0

    def record(self, compute_s: float, audio_s: float, buffered_s: float | None) -> None:
        with self._lock:
            self._compute_s.append(compute_s)
            if buffered_s is not None:
                self._buffered_s.append(buffered_s)
            self.total_compute_s += compute_s
            self.audio_seconds += audio_s
            self.blocks += 1

    def compute_samples(self) -> list[float]:
        with self._lock:
            return list(self._compute_s)

    def mean_buffered_s(self) -> float:
        with self._lock:
            return statistics.fmean(self._buffered_s) if self._buffered_s else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]
