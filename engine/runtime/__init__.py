"""The real-time runtime: ring buffers, streaming resampling, the pipeline and its metrics."""

from .metrics import PipelineMetrics
from .pipeline import Pipeline, block_frames_for
from .resample import StreamResampler
from .ring import RingBuffer

__all__ = ["Pipeline", "PipelineMetrics", "RingBuffer", "StreamResampler", "block_frames_for"]
