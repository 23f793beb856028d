"""One continuous-latent interface over several models, in the style of ``get_voco(name)``.

Generative models that work in a codec's latent space (flow matching, diffusion, latent
language models) want one small interface whatever the codec: time-major audio in, time-major
latents out, and the lengths of both::

    voco = cs.get_voco("dac")                 # or "mel", "encodec", "oobleck"
    latents = voco.encode(audio)              # [B, T, C] -> [B, L, D], L == voco.encode_length(T)
    audio = voco.decode(latents)              # [B, L, D] -> [B, voco.decode_length(L), C]
    with voco.decoder_stream() as stream:     # the same latents, streamed exactly
        for block in latents.split(3, dim=1):
            play(stream.push(block))          # [B, n, C]
        play(stream.flush())

A :class:`LatentAutoencoder` wraps a :class:`~codecstream.plugin.Codec` whose "codes" are
continuous ``[B, D, L]`` latents (the model's ``latents()`` builds it, usually a
:class:`LatentCodec` of its own parts), so offline and streamed results come from the engine's
one code path. :func:`codecstream.get_voco` (in :mod:`codecstream.voco`) loads one by name.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from .contract import FeatureCodes, Length, Quantizer, clamp_length
from .errors import ChannelError, ShapeError
from .plugin import Codec
from .streaming import StreamingModule
from .streams import DecoderStream, EncoderStream
from .windowed import WindowedDecoderStream

__all__ = ["LatentAutoencoder", "LatentCodec", "LatentEncoderStream", "LatentDecoderStream", "clamp_length"]


class LatentCodec(Codec):
    """A model's continuous latent space as a codec of its own, made of that model's parts:
    its encoder (by default), an optional ``quantizer`` whose codes are continuous latents
    (Vocos-EnCodec's summed code embeddings), and its decoder (by default). Codes are
    ``[B, latent_dim, frames]`` floats; the weights are the model's, shared.
    """

    source: Codec

    def __init__(
        self,
        model: Codec,
        *,
        latent_dim: int,
        encoder: StreamingModule | None = None,
        quantizer: Quantizer | None = None,
        decoder: StreamingModule | None = None,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "source", model)  # not a submodule: its parameters are not this one's
        self.name = f"{model.name}-latents"
        self.sample_rate = model.sample_rate
        self.channels = model.channels
        self.hop_length = model.hop_length
        self.latent_dim = latent_dim
        self.code_format = FeatureCodes(latent_dim, "latents")
        self.encoder_kind = model.encoder_kind
        self.missing_encoder = model.missing_encoder
        if self.encoder_kind != "none":
            self.encoder = encoder if encoder is not None else model.encoder_path
        if quantizer is not None:
            self.quantizer = quantizer
        self.decoder = decoder if decoder is not None else model.decoder_path

    @property
    def device(self) -> torch.device:
        return self.source.device

    @property
    def dtype(self) -> torch.dtype:
        return self.source.dtype

    def end_padding(self, samples: int, options: Any) -> int:
        return self.source.end_padding(samples, options)


class LatentAutoencoder(nn.Module):
    """A model's continuous latent space: ``encode`` / ``decode`` with time-major tensors.

    Attributes:
        name: the ``get_voco`` name (or the model's).
        sampling_rate: audio rate, Hz; ``channel``: audio channels (1 or 2).
        latent_dim: ``D``; ``hop_length``: audio samples per latent frame.
        codec: the underlying plugin whose codes are ``[B, D, L]`` latents.
    """

    def __init__(
        self,
        codec: Codec,
        *,
        latent_dim: int,
        encode_length: Callable[[Any], Any],
        decode_length: Callable[[Any], Any],
        name: str | None = None,
        encoder_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.codec = codec
        self.name = name or codec.name
        self.latent_dim = latent_dim
        self._encode_length = encode_length
        self._decode_length = decode_length
        self._encoder_options = dict(encoder_options or {})

    @property
    def sampling_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def channel(self) -> int:
        return self.codec.channels

    @property
    def hop_length(self) -> int:
        return self.codec.hop_length

    @property
    def device(self) -> torch.device:
        return self.codec.device

    @property
    def dtype(self) -> torch.dtype:
        return self.codec.dtype

    def encode_length(self, length: Length) -> Length:
        """Latent frames ``encode`` gives for ``length`` samples (an int or integer tensor)."""
        return self._encode_length(length)

    def decode_length(self, length: Length) -> Length:
        """Samples ``decode`` gives for ``length`` latent frames (an int or integer tensor)."""
        return self._decode_length(length)

    def encode(self, audio: Any) -> Tensor:
        """``[B, T, channel]`` float audio at ``sampling_rate`` → latents ``[B, L, latent_dim]``."""
        with self.encoder_stream(_batch(audio)) as stream:
            return torch.cat([stream.push(audio), stream.flush()], dim=1)

    def decode(self, latents: Any) -> Tensor:
        """Latents ``[B, L, latent_dim]`` → audio ``[B, decode_length(L), channel]``."""
        with self.decoder_stream(_batch(latents)) as stream:
            return torch.cat([stream.push(latents), stream.flush()], dim=1)

    def encoder_stream(self, batch_size: int = 1) -> "LatentEncoderStream":
        """Push ``[B, n, channel]`` audio (any ``n``), get the latent frames now final."""
        stream = self.codec.encoder_stream(batch_size, **self._encoder_options)
        return LatentEncoderStream(stream, self.channel)

    def decoder_stream(self, batch_size: int = 1, **options: Any) -> "LatentDecoderStream":
        """Push ``[B, l, latent_dim]`` latents (any ``l``), get the ``[B, n, channel]`` audio now
        final. ``options`` go to the codec's ``decoder_stream`` (``mode="windowed"``...)."""
        return LatentDecoderStream(self.codec.decoder_stream(batch_size, **options), self.latent_dim)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, sampling_rate={self.sampling_rate}, channel={self.channel}, "
            f"latent_dim={self.latent_dim}, hop_length={self.hop_length}"
        )


def _batch(x: Any) -> int:
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 3 else 1


def _channels_first(x: Any, width: int, what: str, error: type[Exception]) -> Tensor | np.ndarray:
    """``[B, n, width]`` → ``[B, width, n]`` (a view), refusing anything else plainly."""
    if not isinstance(x, (Tensor, np.ndarray)):
        raise ShapeError(f"{what} must be a torch tensor or numpy array [B, n, {width}], got {type(x).__name__}")
    if x.ndim != 3:
        raise ShapeError(f"{what} must be [B, n, {width}] (time-major), got shape {tuple(x.shape)}")
    if x.shape[2] != width:
        raise error(f"{what} must have {width} values per step in the last dimension, got shape {tuple(x.shape)}")
    return x.transpose(1, 2) if isinstance(x, Tensor) else np.swapaxes(x, 1, 2)


class _TimeMajor:
    """What both latent streams share: the engine stream underneath, transposed at the edges."""

    def __init__(self, stream: EncoderStream | DecoderStream | WindowedDecoderStream) -> None:
        self.stream = stream

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency in audio samples (as the engine stream reports it)."""
        return self.stream.latency_samples

    @property
    def latency(self) -> int:
        """Deprecated name of :attr:`latency_samples` (kept for one release)."""
        warnings.warn("stream.latency is now stream.latency_samples", DeprecationWarning, stacklevel=2)
        return self.latency_samples

    @property
    def latency_ms(self) -> float:
        return self.stream.latency_ms

    def reset(self) -> None:
        self.stream.reset()

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LatentEncoderStream(_TimeMajor):
    def __init__(self, stream: EncoderStream, channels: int) -> None:
        super().__init__(stream)
        self.channels = channels

    def push(self, audio: Any) -> Tensor:
        """``[B, n, channels]`` audio → ``[B, l, D]`` latent frames now final (``l`` may be 0)."""
        latents = self.stream.push(_channels_first(audio, self.channels, "audio", ChannelError))
        return latents.transpose(1, 2)

    def flush(self) -> Tensor:
        return self.stream.flush().transpose(1, 2)


class LatentDecoderStream(_TimeMajor):
    def __init__(self, stream: DecoderStream | WindowedDecoderStream, latent_dim: int) -> None:
        super().__init__(stream)
        self.latent_dim = latent_dim

    def push(self, latents: Any) -> Tensor:
        """``[B, l, D]`` latents → ``[B, n, channels]`` audio now final (``n`` may be 0)."""
        audio = self.stream.push(_channels_first(latents, self.latent_dim, "latents", ShapeError))
        return audio.transpose(1, 2)

    def flush(self) -> Tensor:
        return self.stream.flush().transpose(1, 2)
