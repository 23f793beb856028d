"""codecstream: a real-time streaming engine for neural audio codecs and vocoders.

    import codecstream as cs
    model = cs.load("encodec-24khz", weights="random")
    codes = model.encode(audio, bandwidth=6.0)       # audio: [B, C, T] float
    stream = model.decoder_stream()
    out = stream.push(codes[..., :5])                # any number of frames
    print(stream.latency_samples, "samples of algorithmic latency")
"""

from __future__ import annotations

from .errors import *  # noqa: F401,F403 - the documented exception hierarchy
from .errors import __all__ as _error_names
from .contract import CodeFormat, CodeLevel, FeatureCodes, IndexCodes, ModelSpec, TokenSpec
from .latents import LatentAutoencoder, LatentCodec
from .plugin import Codec
from .registry import ENTRY_POINT_GROUP, get_spec, list_models, load
from .voco import LATENT_MODELS, get_voco
from .streaming import StreamContext
from .streams import DecoderStream, EncoderStream
from .groups import GroupStream, StreamGroup

__version__ = "0.1.0"

__all__ = [
    "Codec",
    "CodeFormat",
    "CodeLevel",
    "DecoderStream",
    "ENTRY_POINT_GROUP",
    "EncoderStream",
    "FeatureCodes",
    "GroupStream",
    "IndexCodes",
    "LATENT_MODELS",
    "LatentAutoencoder",
    "LatentCodec",
    "ModelSpec",
    "StreamContext",
    "StreamGroup",
    "TokenSpec",
    "get_spec",
    "get_voco",
    "list_models",
    "load",
    "__version__",
    *_error_names,
]
