"""Streaming sample-rate conversion with soxr: stateful, so block seams make no clicks."""

from __future__ import annotations

import numpy as np

from ..errors import CodecStreamError

__all__ = ["StreamResampler"]


class StreamResampler:
    """``[n, channels]`` float32 blocks at ``in_rate`` → blocks at ``out_rate``.

    The concatenated output equals resampling the whole signal at once (soxr keeps its
    filter state between blocks). ``delay_samples`` is the filter's delay, at ``out_rate``.
    With equal rates it passes blocks through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1, *, quality: str = "HQ") -> None:
        self.in_rate, self.out_rate, self.channels = int(in_rate), int(out_rate), channels
        self._stream = None
        if self.in_rate != self.out_rate:
            try:
                import soxr
            except ImportError as exc:
                raise CodecStreamError("resampling needs soxr: pip install 'codecstream[audio]'") from exc
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, channels, dtype="float32", quality=quality)

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    @property
    def delay_samples(self) -> float:
        """Samples (at ``out_rate``) the filter holds back."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def process(self, block: np.ndarray, *, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return block
        return np.asarray(self._stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last), dtype=np.float32).reshape(-1, self.channels)

    def flush(self) -> np.ndarray:
        return self.process(np.zeros((0, self.channels), dtype=np.float32), last=True)
