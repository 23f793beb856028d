"""The plugin base class: a model gives its parts, the engine writes everything users call.

A plugin subclasses :class:`Codec` (an ``nn.Module``) and sets its parts in its constructor
(streaming encoder and decoder, quantizer, code format; see :mod:`codecstream.contract`).
``encode``, ``decode``, ``encoder_stream``, ``decoder_stream``, the windowed mode and the
latency figures are written once, here and in :mod:`codecstream.streams`, so every model
behaves the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable

import torch
from torch import Tensor, nn

from .contract import CodeFormat, CodeLevel, DecoderKind, EncoderKind, Quantizer, TokenSpec
from .errors import OptionError
from .options import WINDOWED_OPTIONS, Option, check_options
from .streaming import StreamContext, StreamingModule
from .streams import DecoderStream, EncoderStream
from .validation import check_audio, check_sample_rate
from .windowed import WindowedDecoderStream

if TYPE_CHECKING:
    from .latents import LatentAutoencoder

__all__ = ["Codec", "CodeLevel", "TokenSpec"]


class Codec(nn.Module):
    """Base class of model plugins: a model's parts, and the façade the engine writes on them.

    **What a plugin provides** (set in its constructor; see README "Writing a plugin"):

    - ``name``, ``sample_rate`` (Hz), ``channels``, ``hop_length`` (audio samples per frame of
      codes), ``token_spec`` (``None`` for continuous features).
    - ``encoder``: a :class:`~codecstream.streaming.StreamingModule`, audio ``[B, channels, n]``
      → latents ``[B, D, m]``; ``decoder``: latents → audio.
    - ``quantizer`` (optional, :class:`~codecstream.contract.Quantizer`): latents → codes and
      back; without one the encoder's output is the codes (features, VAE latents).
    - ``code_format``: a :class:`~codecstream.contract.CodeFormat` (how the codes are held).

    Optional: ``encoder_kind`` / ``decoder_kind`` (capabilities), ``option_specs()`` (the typed
    options) with ``parse_encoder_options()`` / ``parse_decoder_options()`` (what the parts
    receive as ``ctx.options``), ``end_padding()`` (zeros the encoder's input is padded with at the end),
    ``decoder_alignment``, ``default_context_frames`` (windowed mode), ``latents()``, and for an
    offline encoder or a windowed-only decoder ``encode_offline`` / ``decode_offline``.

    **What the engine writes once**, for every plugin: ``encode``, ``decode``,
    ``encoder_stream``, ``decoder_stream`` (exact and windowed), the latency figures, and the
    code algebra (``empty_codes`` ... ``codes_from_arrays``) over ``code_format``.
    """

    name: str = "codec"
    sample_rate: int
    channels: int
    hop_length: int
    token_spec: TokenSpec | None = None
    code_format: CodeFormat
    encoder_kind: EncoderKind = "streaming"
    decoder_kind: DecoderKind = "exact"
    #: Raised by ``encoder_stream`` / ``encode`` when ``encoder_kind == "none"`` (say why).
    missing_encoder: Exception | None = None
    #: Whether ``decoder_stream(mode="windowed")`` applies (EnCodec 48 kHz streams whole
    #: segments exactly; windows of segments would only add latency).
    windowed_decoding: bool = True
    #: Windows of codes must start at multiples of this many frames (SNAC: its coarsest code's span).
    decoder_alignment: int = 1
    #: Past frames a windowed stream decodes with each block by default (None: as many as the
    #: exact decoder's lookahead, which covers a symmetric receptive field).
    default_context_frames: int | None = None

    # -- parts ----------------------------------------------------------------------------
    #: Options the parts apply to each row's state at a stream's first push and never read
    #: again (SNAC: ``noise_seed``), so streams that differ only in them share a batch
    #: (:class:`~codecstream.groups.StreamGroup`).
    row_options: tuple[str, ...] = ()

    def stream_through(self, encoder: StreamingModule | None, decoder: StreamingModule) -> None:
        """Stream through these modules rather than the ``encoder`` / ``decoder`` submodules
        (when a chain is more than one submodule, or carries a stateful quantizer). They are
        kept out of the module tree, so parameter names stay the checkpoint's."""
        object.__setattr__(self, "_stream_paths", (encoder, decoder))

    @property
    def encoder_path(self) -> StreamingModule:
        """The streaming module from audio to latents (default: the ``encoder`` submodule)."""
        paths = self.__dict__.get("_stream_paths")
        return paths[0] if paths is not None and paths[0] is not None else self._modules["encoder"]  # type: ignore[return-value]

    @property
    def decoder_path(self) -> StreamingModule:
        """The streaming module from latents to audio (default: the ``decoder`` submodule)."""
        paths = self.__dict__.get("_stream_paths")
        return paths[1] if paths is not None else self._modules["decoder"]  # type: ignore[return-value]

    @property
    def quantizer_part(self) -> Quantizer | None:
        """The ``quantizer`` attribute (a module or a plain object), or None without one."""
        part = self._modules.get("quantizer")
        return part if part is not None else self.__dict__.get("quantizer")  # type: ignore[return-value]

    def option_specs(self) -> tuple[Option, ...]:
        """Every option this model's streams take, typed and with its range (see
        :mod:`codecstream.options`); the windowed decoding options are the engine's and not
        listed here. Streams validate against it before ``encoder_options`` runs."""
        return ()

    def parse_encoder_options(self, values: dict[str, Any]) -> Any:
        """Encoder options, checked against :meth:`option_specs` (unset ones absent or None) →
        what the parts get as ``ctx.options`` (default: the values with their defaults filled
        in, or None when the model has none). EnCodec turns ``bandwidth`` into a code-book count."""
        return self._resolve("encoder", values)

    def parse_decoder_options(self, values: dict[str, Any]) -> Any:
        """Decoder options, checked → what the parts get as ``ctx.options``."""
        return self._resolve("decoder", values)

    def end_padding(self, samples: int, options: Any) -> int:
        """Zeros appended to the encoder's input at the end of a stream of ``samples`` samples
        (default none: the encoder pads its own edges)."""
        return 0

    def encode_offline(self, audio: Tensor, **options: Any) -> Any:
        """``encoder_kind == "offline"``: codes of the whole checked ``[B, channels, T]`` audio."""
        raise NotImplementedError(f"{self.name} declares an offline encoder but has no encode_offline")

    def decode_offline(self, codes: Any) -> Tensor:
        """``decoder_kind == "windowed"``: audio of whole checked codes."""
        raise NotImplementedError(f"{self.name} declares a windowed decoder but has no decode_offline")

    def encoder_options(self, **options: Any) -> Any:
        """Check encoder options against the schema and parse them (what a stream's parts get)."""
        return self.parse_encoder_options(check_options(self.option_specs(), options, side="encoder", what=self.name))

    def decoder_options(self, **options: Any) -> Any:
        """Check decoder options against the schema and parse them."""
        return self.parse_decoder_options(check_options(self.option_specs(), options, side="decoder", what=self.name))

    def latents(self, **options: Any) -> "LatentAutoencoder":
        """This model's continuous latent space behind the time-major ``get_voco`` interface
        (see :mod:`codecstream.latents`); OptionError for models that have none."""
        raise OptionError(f"{self.name} has no continuous latent space (see codecstream.voco.LATENT_MODELS)")

    # -- capabilities (read-only views of the kinds) ---------------------------------------
    @property
    def has_encoder(self) -> bool:
        return self.encoder_kind != "none"

    @property
    def streaming_encoder(self) -> bool:
        return self.encoder_kind == "streaming"

    @property
    def exact_decoder(self) -> bool:
        return self.decoder_kind == "exact"

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
            audio: ``[B, channels, T]`` float tensor or array at ``self.encoder_sample_rate``.
            sample_rate: the rate ``audio`` is at, checked against the model's when given.
            **options: model options (EnCodec: ``bandwidth`` in kbps).
        Returns:
            The model's codes (EnCodec: ``[B, K, ceil(T / hop_length)]`` int64).
        """
        if self.encoder_kind == "offline":
            self._check_encoder()
            check_sample_rate(sample_rate, self.encoder_sample_rate)
            checked = self.check_audio(audio, audio_batch_size(audio))
            with torch.inference_mode():
                return self.encode_offline(checked, **options)
        stream = self.encoder_stream(audio_batch_size(audio), sample_rate=sample_rate, **options)
        return self.concat_codes([stream.push(audio), stream.flush()])

    def decode(self, codes: Any) -> Tensor:
        """Offline decoding of ``codes`` (as ``encode`` returns them) to ``[B, channels, T]`` audio."""
        if self.decoder_kind == "windowed":
            checked = self.check_codes(codes)
            if self.num_frames(checked) == 0:
                return self.empty_audio(self.codes_batch_size(checked))
            with torch.inference_mode():
                return self.decode_offline(checked)
        stream = self.decoder_stream(self.codes_batch_size(codes))
        return torch.cat([stream.push(codes), stream.flush()], dim=-1)

    def encoder_stream(self, batch_size: int = 1, *, sample_rate: int | None = None, **options: Any) -> EncoderStream:
        """A stream that turns audio pushed in chunks of any length into codes."""
        self._check_encoder()
        if self.encoder_kind == "offline":
            raise OptionError(f"{self.name}'s encoder needs the whole signal at once: call encode()")
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
    ) -> DecoderStream | WindowedDecoderStream:
        """A stream that turns codes pushed in chunks of any number of frames into audio.

        ``mode="exact"`` (the default where the model allows it) equals the offline decode.
        ``mode="windowed"`` re-decodes windows of ``context_frames`` + ``block_frames`` +
        ``lookahead_frames`` frames and cross-fades ``crossfade_frames`` between them: lower
        latency for an error the caller measures (see :mod:`codecstream.windowed`).
        ``options`` are the model's decoder options (SNAC: ``noise``, ``noise_seed``).
        """
        parsed = self.decoder_options(**options)
        windowed = {"mode": mode, "lookahead_frames": lookahead_frames, "context_frames": context_frames, "block_frames": block_frames, "crossfade_frames": crossfade_frames}
        check_options(WINDOWED_OPTIONS, {k: v for k, v in windowed.items() if v is not None}, what=self.name)
        if mode == "exact" and self.decoder_kind != "exact":
            raise OptionError(
                f"{self.name} cannot stream exactly (every output depends on every frame): use "
                "decoder_stream(mode='windowed', lookahead_frames=...) or decode() offline"
            )
        if mode == "exact":
            if lookahead_frames is not None or context_frames is not None or block_frames is not None or crossfade_frames:
                raise OptionError("lookahead_frames, context_frames, block_frames and crossfade_frames need mode='windowed'")
            return DecoderStream(self, batch_size, options=parsed)
        if mode != "windowed":
            raise OptionError(f"mode must be 'exact' or 'windowed', got {mode!r}")
        if not self.windowed_decoding:
            raise OptionError(f"{self.name} streams exactly; mode={mode!r} does not apply")
        if lookahead_frames is None:
            raise OptionError("mode='windowed' needs lookahead_frames")
        return WindowedDecoderStream(
            self,
            batch_size,
            lookahead_frames=lookahead_frames,
            context_frames=context_frames if context_frames is not None else self._default_context_frames(options),
            block_frames=block_frames if block_frames is not None else self.decoder_alignment,
            crossfade_frames=crossfade_frames,
            options=options,
        )

    def check_audio(self, audio: Any, batch_size: int | None = None) -> Tensor:
        """Validate audio for the encoder and move it to the model's device and dtype."""
        return check_audio(audio, channels=self.channels, dtype=self.dtype, device=self.device, batch_size=batch_size)

    # -- the streams' steps, written once on the parts -------------------------------------
    def encoder_step(self, audio: Tensor, ctx: StreamContext) -> Any:
        """Consume checked audio ``[B, C, n]``; return the codes that are now final."""
        latents = self.encoder_path.step(audio, ctx)
        quantizer = self.quantizer_part
        return latents if quantizer is None else quantizer.encode(latents, ctx.options)

    def encoder_flush(self, ctx: StreamContext) -> Any:
        """The codes left at the end of the stream (None when there are none)."""
        latents = self.encoder_path.flush(ctx)
        quantizer = self.quantizer_part
        return latents if latents is None or quantizer is None else quantizer.encode(latents, ctx.options)

    def encoder_frames(self, n_samples: int) -> int:
        """Frames ``encoder_step`` has returned in total after ``n_samples`` samples."""
        return self.encoder_path.output_count(n_samples)

    def decoder_step(self, codes: Any, ctx: StreamContext) -> Tensor:
        """Consume checked codes; return the audio ``[B, C, n]`` that is now final."""
        quantizer = self.quantizer_part
        latents = codes if quantizer is None else quantizer.decode(codes).to(self.dtype)
        return self.decoder_path.step(latents, ctx)

    def decoder_flush(self, ctx: StreamContext) -> Tensor | None:
        return self.decoder_path.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        """Samples ``decoder_step`` has returned in total after ``n_frames`` frames."""
        return self.decoder_path.output_count(n_frames)

    @property
    def encoder_block(self) -> int:
        """Between releases the encoder stream feeds the model whole multiples of this many
        samples (a release point always gets everything received)."""
        return self.hop_length

    def decode_window(self, codes: Any, options: dict[str, Any]) -> Tensor:
        """Offline decode of a window of codes, for :class:`~codecstream.windowed.WindowedDecoderStream`."""
        if self.decoder_kind == "windowed":
            self.decoder_options(**options)
            return self.decode_offline(codes)
        stream = self.decoder_stream(self.codes_batch_size(codes), **options)
        return torch.cat([stream.push(codes), stream.flush()], dim=-1)

    # -- code containers: the model's code_format ------------------------------------------
    def empty_codes(self, batch_size: int, options: Any = None) -> Any:
        """Codes of zero frames (``options``: as ``encoder_options`` parsed them)."""
        return self.code_format.empty(batch_size, options, device=self.device, dtype=self.dtype)

    def check_codes(self, codes: Any, batch_size: int | None = None) -> Any:
        """Validate codes (or features) for the decoder and move them to the model's device."""
        return self.code_format.check(codes, batch_size, model=self.name, device=self.device, dtype=self.dtype)

    def code_layout(self, codes: Any) -> Hashable:
        """What must stay the same between pushes of one stream (EnCodec: the code-book count)."""
        return self.code_format.layout(codes)

    def codes_batch_size(self, codes: Any) -> int:
        return self.code_format.batch_size(codes)

    def num_frames(self, codes: Any) -> int:
        """Frames of codes (of the finest level for multi-level codes)."""
        return self.code_format.num_frames(codes)

    def slice_codes(self, codes: Any, start: int, end: int) -> Any:
        """Frames ``start:end`` of ``codes`` (in units of ``num_frames``)."""
        return self.code_format.slice(codes, start, end)

    def concat_codes(self, parts: list[Any]) -> Any:
        """Join code chunks along time."""
        return self.code_format.concat(parts)

    def codes_to_arrays(self, codes: Any) -> list[Tensor]:
        """The tensors a codes file stores for ``codes`` (see :mod:`codecstream.codes_file`)."""
        return self.code_format.to_arrays(codes)

    def codes_from_arrays(self, arrays: list[Tensor]) -> Any:
        """Inverse of :meth:`codes_to_arrays`."""
        return self.code_format.from_arrays(arrays)

    def empty_audio(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, self.channels, 0, dtype=self.dtype, device=self.device)

    # -- internals ------------------------------------------------------------------------
    def _check_encoder(self) -> None:
        if self.encoder_kind == "none":
            raise self.missing_encoder or OptionError(f"{self.name} has no encoder")

    def _resolve(self, side: str, values: dict[str, Any]) -> dict[str, Any] | None:
        specs = [option for option in self.option_specs() if option.side == side]
        if not specs:
            return None
        return {option.name: values[option.name] if values.get(option.name) is not None else option.default for option in specs}

    def _default_context_frames(self, options: dict[str, Any]) -> int:
        if self.default_context_frames is not None:
            return self.default_context_frames
        exact = self.decoder_stream(1, **options).latency_samples
        return -(-exact // self.hop_length)


def audio_batch_size(audio: Any) -> int:
    shape = getattr(audio, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 3 else 1
