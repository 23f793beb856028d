"""The real-time runtime: ring buffers, streaming resampling, the pipeline and its metrics."""

from .metrics import PipelineMetrics
from .pipeline import Pipeline, block_samples_for
from .pipeline import block_frames_for as block_frames_for  # deprecated name, kept for one release
from .resample import StreamResampler
from .ring import RingBuffer

__all__ = ["Pipeline", "PipelineMetrics", "RingBuffer", "StreamResampler", "block_samples_for"]
