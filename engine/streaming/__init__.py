"""Stateful layers that stream exactly: what a model plugin is built from.

See :mod:`codecstream.streaming.module` for the contract every layer keeps.
"""

from .containers import FoldChannels, Residual, StreamingSequential
from .framing import FramedModule, PadMode
from .conv import StreamingConv1d
from .conv_transpose import StreamingConvTranspose1d
from .module import StreamContext, StreamingModule, cat_time
from .recurrent import StreamingLSTM

__all__ = [
    "FoldChannels",
    "FramedModule",
    "PadMode",
    "Residual",
    "StreamContext",
    "StreamingConv1d",
    "StreamingConvTranspose1d",
    "StreamingLSTM",
    "StreamingModule",
    "StreamingSequential",
    "cat_time",
]
