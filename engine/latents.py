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
continuous ``[B, D, L]`` latents (the model's ``latents()`` builds it), so offline and streamed
results come from the engine's one code path.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ChannelError, ShapeError, UnknownModelError
from .plugin import Codec
from .streams import DecoderStream, EncoderStream
from .validation import check_feature_tensor

__all__ = ["ContinuousCodes", "LatentAutoencoder", "LatentEncoderStream", "LatentDecoderStream", "LATENT_MODELS", "get_voco"]

Length = TypeVar("Length", int, Tensor)

#: ``get_voco`` names and the registered model each one loads.
LATENT_MODELS: dict[str, str] = {
    "mel": "vocos-mel-24khz",
    "encodec": "vocos-encodec-24khz",
    "dac": "dac-44khz",
    "dac-44khz": "dac-44khz",
    "dac-24khz": "dac-24khz",
    "dac-16khz": "dac-16khz",
    "oobleck": "oobleck",
}

_NOT_ESTABLISHED = {
    "dacvae": (
        "dacvae is not supported: no published description of its layers and checkpoint layout could "
        "be checked here, and a guessed architecture would load its weights into the wrong network"
    ),
}


class ContinuousCodes:
    """Codec mix-in for codes that are continuous latents ``[B, latent_dim, frames]``."""

    latent_dim: int
    name: str
    dtype: torch.dtype
    device: torch.device

    def empty_codes(self, batch_size: int, options: Any) -> Tensor:
        return torch.zeros(batch_size, self.latent_dim, 0, dtype=self.dtype, device=self.device)

    def check_codes(self, latents: Any, batch_size: int | None = None) -> Tensor:
        return check_feature_tensor(
            latents, channels=self.latent_dim, model=self.name, dtype=self.dtype, device=self.device,
            batch_size=batch_size, what="latents",
        )


def clamp_length(length: Length) -> Length:
    """``max(0, length)`` for an int or an integer tensor."""
    if isinstance(length, Tensor):
        return length.clamp(min=0)
    return max(0, length)


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

    def __init__(self, stream: EncoderStream | DecoderStream) -> None:
        self.stream = stream

    @property
    def latency(self) -> int:
        """Algorithmic latency in audio samples (as the engine stream reports it)."""
        return self.stream.latency

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
    def __init__(self, stream: DecoderStream, latent_dim: int) -> None:
        super().__init__(stream)
        self.latent_dim = latent_dim

    def push(self, latents: Any) -> Tensor:
        """``[B, l, D]`` latents → ``[B, n, channels]`` audio now final (``n`` may be 0)."""
        audio = self.stream.push(_channels_first(latents, self.latent_dim, "latents", ShapeError))
        return audio.transpose(1, 2)

    def flush(self) -> Tensor:
        return self.stream.flush().transpose(1, 2)


def get_voco(
    name: str,
    weights: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> LatentAutoencoder:
    """The continuous latent space of model ``name`` (:data:`LATENT_MODELS`).

    - ``mel``: Vocos 24 kHz, 100-band log-mel at 93.75 Hz (``D = 100``).
    - ``encodec``: EnCodec 24 kHz at ``bandwidth`` kbps (default 6: 8 code-books), its codes
      embedded and summed as Vocos reads them (``D = 128``, 75 Hz), decoded by Vocos.
    - ``dac`` (``dac-44khz``; also ``dac-24khz``, ``dac-16khz``): the encoder's output before
      quantisation (``D = 1024``), decoded by the DAC decoder.
    - ``oobleck``: Stable Audio Open's VAE, the posterior mean (``D = 64``, stereo, 21.5 Hz).

    ``weights``, ``device``, ``dtype`` as :func:`codecstream.load`; ``options`` go to the
    model's ``latents()`` (``bandwidth`` for ``encodec``). Audio is padded with zeros to a whole
    hop at the end, so ``decode(encode(x))`` covers all of ``x``.
    """
    from .registry import load

    if name in _NOT_ESTABLISHED:
        raise UnknownModelError(_NOT_ESTABLISHED[name])
    if name not in LATENT_MODELS:
        raise UnknownModelError(f"no latent model {name!r}; choose from {', '.join(LATENT_MODELS)}")
    model = load(LATENT_MODELS[name], weights, device=device, dtype=dtype)
    voco = model.latents(**options)
    voco.name = name
    return voco
