"""The plugin contract: what a model must provide for the engine to stream it.

A plugin subclasses :class:`Codec` (an ``nn.Module``) and implements the hooks in the
"plugin hooks" section below on top of the engine's streaming layers. Everything a user calls
(``encode``, ``decode``, ``encoder_stream``, ``decoder_stream``, the latency figures) is
written once, here and in :mod:`codecstream.streams`, so every model behaves the same way.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable

import torch
from torch import Tensor, nn

from .errors import OptionError
from .options import WINDOWED_OPTIONS, Option, check_options
from .streaming import StreamContext
from .validation import check_audio

if TYPE_CHECKING:
    from .latents import LatentAutoencoder
    from .streams import DecoderStream, EncoderStream
    from .windowed import WindowedDecoderStream

__all__ = ["Codec", "CodeLevel", "TokenSpec"]


@dataclass(frozen=True)
class CodeLevel:
    """One level of discrete codes: ``num_codebooks`` parallel code-books at one frame rate.

    Attributes:
        num_codebooks: code-books at this level (EnCodec: up to 32; SNAC: 1 per level).
        codebook_size: entries per code-book; valid codes are ``0 .. codebook_size - 1``.
        hop_length: audio samples per code frame at this level.
        sample_rate: audio sample rate, Hz.
    """

    num_codebooks: int
    codebook_size: int
    hop_length: int
    sample_rate: int

    @property
    def frame_rate(self) -> float:
        """Code frames per second at this level, Hz."""
        return self.sample_rate / self.hop_length


@dataclass(frozen=True)
class TokenSpec:
    """The discrete codes a model emits: its levels and the bit-rates it offers."""

    levels: tuple[CodeLevel, ...]
    bandwidths_kbps: tuple[float, ...] = ()

    @property
    def frame_rates(self) -> tuple[float, ...]:
        return tuple(level.frame_rate for level in self.levels)


class Codec(nn.Module):
    """Base class of model plugins: an encoder side (audio → codes or features) and a decoder
    side (codes or features → audio), both streamable.

    Class attributes a plugin sets: ``name``, ``sample_rate`` (Hz), ``channels``,
    ``hop_length`` (audio samples per frame of codes or features), ``token_spec`` (``None``
    for continuous features such as mel spectrograms).
    """

    name: str = "codec"
    sample_rate: int
    channels: int
    hop_length: int
    token_spec: TokenSpec | None = None
    #: Whether ``encode`` / ``encoder_stream`` exist (a pure vocoder may have none).
    has_encoder: bool = True
    #: Whether the encoder streams (False: it needs the whole signal; ``encode`` only).
    streaming_encoder: bool = True
    #: Whether ``decoder_stream(mode="exact")`` exists (False: full attention or norms over all
    #: frames; ``decode`` offline and ``mode="windowed"`` only).
    exact_decoder: bool = True

    # -- what users call ----------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        """Frames of codes or features per second, Hz."""
        return self.sample_rate / self.hop_length

    @property
    def encoder_sample_rate(self) -> int:
        """Rate of the audio the encoder takes, Hz (NeuCodec: 16 kHz in, 24 kHz out)."""
        return self.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def encode(self, audio: Any, *, sample_rate: int | None = None, **options: Any) -> Any:
        """Offline encoding: one push of the whole signal and a flush.

        Args:
            audio: ``[B, channels, T]`` float tensor or array at ``self.sample_rate``.
            sample_rate: the rate ``audio`` is at, checked against the model's when given.
            **options: model options (EnCodec: ``bandwidth`` in kbps).
        Returns:
            The model's codes (EnCodec: ``[B, K, ceil(T / hop_length)]`` int64).
        """
        stream = self.encoder_stream(audio_batch_size(audio), sample_rate=sample_rate, **options)
        return self.concat_codes([stream.push(audio), stream.flush()])

    def decode(self, codes: Any) -> Tensor:
        """Offline decoding of ``codes`` (as ``encode`` returns them) to ``[B, channels, T]`` audio."""
        stream = self.decoder_stream(self.codes_batch_size(codes))
        parts = [stream.push(codes), stream.flush()]
        return torch.cat(parts, dim=-1)

    def encoder_stream(
        self, batch_size: int = 1, *, sample_rate: int | None = None, **options: Any
    ) -> "EncoderStream":
        """A stream that turns audio pushed in chunks of any length into codes."""
        from .streams import EncoderStream

        if not self.has_encoder:
            raise OptionError(f"{self.name} has no encoder")
        if not self.streaming_encoder:
            raise OptionError(f"{self.name}'s encoder needs the whole signal at once: call encode()")
        check_options(self.option_specs(), options, side="encoder", what=self.name)
        _check_options(self.encoder_options, options, f"{self.name} encoder")
        return EncoderStream(self, batch_size, sample_rate=sample_rate, options=self.encoder_options(**options))

    def decoder_stream(
        self,
        batch_size: int = 1,
        *,
        mode: str = "exact",
        lookahead_frames: int | None = None,
        context_frames: int | None = None,
        block_frames: int | None = None,
        crossfade_frames: int = 0,
        **options: Any,
    ) -> "DecoderStream | WindowedDecoderStream":
        """A stream that turns codes pushed in chunks of any number of frames into audio.

        ``mode="exact"`` (the default where the model allows it) equals the offline decode.
        ``mode="windowed"`` re-decodes windows of ``context_frames`` + ``block_frames`` +
        ``lookahead_frames`` frames and cross-fades ``crossfade_frames`` between them: lower
        latency for an error the caller measures (see :mod:`codecstream.windowed`).
        ``options`` are the model's decoder options (SNAC: ``noise``, ``noise_seed``).
        """
        from .streams import DecoderStream
        from .windowed import WindowedDecoderStream

        check_options(self.option_specs(), options, side="decoder", what=self.name)
        _check_options(self.decoder_options, options, f"{self.name} decoder")
        windowed = {"mode": mode, "lookahead_frames": lookahead_frames, "context_frames": context_frames, "block_frames": block_frames, "crossfade_frames": crossfade_frames}
        check_options(WINDOWED_OPTIONS, {k: v for k, v in windowed.items() if v is not None}, what=self.name)
        if mode == "exact" and not self.exact_decoder:
            raise OptionError(
                f"{self.name} cannot stream exactly (every output depends on every frame): use "
                "decoder_stream(mode='windowed', lookahead_frames=...) or decode() offline"
            )
        if mode == "exact":
            if lookahead_frames is not None or context_frames is not None or block_frames is not None or crossfade_frames:
                raise OptionError("lookahead_frames, context_frames, block_frames and crossfade_frames need mode='windowed'")
            return DecoderStream(self, batch_size, options=self.decoder_options(**options))
        if mode != "windowed":
            raise OptionError(f"mode must be 'exact' or 'windowed', got {mode!r}")
        if lookahead_frames is None:
            raise OptionError("mode='windowed' needs lookahead_frames")
        return WindowedDecoderStream(
            self,
            batch_size,
            lookahead_frames=lookahead_frames,
            context_frames=context_frames,
            block_frames=block_frames if block_frames is not None else self.decoder_alignment,
            crossfade_frames=crossfade_frames,
            options=options,
        )

    def latents(self, **options: Any) -> "LatentAutoencoder":
        """This model's continuous latent space behind the time-major ``get_voco`` interface
        (see :mod:`codecstream.latents`); OptionError for models that have none."""
        raise OptionError(f"{self.name} has no continuous latent space (see codecstream.latents.LATENT_MODELS)")

    def option_specs(self) -> tuple[Option, ...]:
        """Every option this model's streams take, typed and with its range (see
        :mod:`codecstream.options`); the windowed decoding options are the engine's and not
        listed here. Streams validate against it before the model's own parsers run."""
        return ()

    # -- plugin hooks: encoder side -----------------------------------------------------
    def encoder_options(self, **options: Any) -> Any:
        """Validate encoder options and return them in the form the hooks below take."""
        if options:
            raise OptionError(f"{self.name} takes no encoder options, got {sorted(options)}")
        return None

    def encoder_step(self, audio: Tensor, ctx: StreamContext, options: Any) -> Any:
        """Consume checked audio ``[B, C, n]``; return the codes that are now final."""
        raise NotImplementedError

    def encoder_flush(self, ctx: StreamContext, options: Any) -> Any:
        """Return the codes left at end of stream."""
        raise NotImplementedError

    def encoder_frames(self, n_samples: int) -> int:
        """Frames ``encoder_step`` has returned in total after ``n_samples`` samples."""
        raise NotImplementedError

    @property
    def encoder_block(self) -> int:
        """Between releases the encoder stream feeds the model whole multiples of this many
        samples (a release point always gets everything received)."""
        return self.hop_length

    def check_audio(self, audio: Any, batch_size: int | None = None) -> Tensor:
        return check_audio(
            audio, channels=self.channels, dtype=self.dtype, device=self.device, batch_size=batch_size
        )

    # -- plugin hooks: decoder side -----------------------------------------------------
    def decoder_options(self, **options: Any) -> Any:
        if options:
            raise OptionError(f"{self.name} takes no decoder options, got {sorted(options)}")
        return None

    def check_codes(self, codes: Any, batch_size: int | None = None) -> Any:
        """Validate codes (or features) for the decoder and move them to the model's device."""
        raise NotImplementedError

    def code_layout(self, codes: Any) -> Hashable:
        """What must stay the same between pushes of one stream (EnCodec: the code-book count)."""
        return None

    def codes_batch_size(self, codes: Any) -> int:
        return int(codes.shape[0])

    def decoder_step(self, codes: Any, ctx: StreamContext, options: Any) -> Tensor:
        """Consume checked codes; return the audio ``[B, C, n]`` that is now final."""
        raise NotImplementedError

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        raise NotImplementedError

    def decoder_samples(self, n_frames: int) -> int:
        """Samples ``decoder_step`` has returned in total after ``n_frames`` frames."""
        raise NotImplementedError

    def decode_window(self, codes: Any, options: dict[str, Any]) -> Tensor:
        """Offline decode of a window of codes, for :class:`~codecstream.windowed.WindowedDecoderStream`."""
        stream = self.decoder_stream(self.codes_batch_size(codes), **options)
        return torch.cat([stream.push(codes), stream.flush()], dim=-1)

    def default_context_frames(self, options: dict[str, Any]) -> int:
        """Past frames a windowed stream decodes with each block by default: as many as the
        exact decoder's lookahead (a symmetric receptive field is then covered)."""
        exact = self.decoder_stream(1, **options).latency
        return -(-exact // self.hop_length)

    @property
    def decoder_alignment(self) -> int:
        """Windows of codes must start at multiples of this many frames (SNAC: its coarsest
        code's span, or its attention block)."""
        return 1

    # -- code containers ----------------------------------------------------------------
    def empty_codes(self, batch_size: int, options: Any) -> Any:
        raise NotImplementedError

    def num_frames(self, codes: Any) -> int:
        """Frames of codes (of the finest level for multi-level codes)."""
        return int(codes.shape[-1])

    def slice_codes(self, codes: Any, start: int, end: int) -> Any:
        """Frames ``start:end`` of ``codes`` (in units of ``num_frames``)."""
        return codes[..., start:end]

    def concat_codes(self, parts: list[Any]) -> Any:
        """Join code chunks along time."""
        parts = [p for p in parts if p is not None]
        return torch.cat(parts, dim=-1)

    def codes_to_arrays(self, codes: Any) -> list[Tensor]:
        """The tensors a codes file stores for ``codes`` (see :mod:`codecstream.codes_file`)."""
        return list(codes) if isinstance(codes, (list, tuple)) else [codes]

    def codes_from_arrays(self, arrays: list[Tensor]) -> Any:
        """Inverse of :meth:`codes_to_arrays`."""
        return arrays[0] if len(arrays) == 1 else list(arrays)

    def empty_audio(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, self.channels, 0, dtype=self.dtype, device=self.device)


def audio_batch_size(audio: Any) -> int:
    shape = getattr(audio, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 3 else 1


def _check_options(parser: Any, options: dict[str, Any], what: str) -> None:
    """Turn an unknown keyword into OptionError naming the options that exist."""
    signature = inspect.signature(parser)
    try:
        signature.bind(**options)
    except TypeError:
        accepted = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
        raise OptionError(
            f"{what} got unknown option(s) {sorted(options)}; it accepts {accepted or 'none'}"
        ) from None
