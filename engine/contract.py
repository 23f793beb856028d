"""What a model plugin is made of: the parts the engine builds every stream from.

This module is the bottom of the package's dependency graph (above the streaming layers,
errors, options and validation): model families import it, and nothing here imports a model,
the registry or the user-facing streams.

- :class:`CodeLevel` / :class:`TokenSpec`: what the discrete codes are (levels, rates, sizes).
- :class:`CodeFormat`: the container algebra of a model's codes (empty / check / layout /
  frames / slice / concat / to and from arrays). :class:`IndexCodes` (``[B, K, frames]``
  integer codes) and :class:`FeatureCodes` (``[B, D, frames]`` float features or latents) cover
  every built-in model but two (SNAC's levels, EnCodec 48 kHz's segments), which bring their own.
- :class:`Quantizer`: continuous latents to codes and back, stateless per call.
- :data:`EncoderKind` / :data:`DecoderKind`: the capability flags.
- :class:`ModelSpec`: how the registry builds a named model and reads its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Literal, Protocol, Sequence, TypeVar

import torch
from torch import Tensor

from .errors import CodeRangeError
from .validation import check_code_tensor, check_feature_tensor

__all__ = [
    "CodeFormat",
    "CodeLevel",
    "DecoderKind",
    "EncoderKind",
    "FeatureCodes",
    "IndexCodes",
    "Length",
    "ModelSpec",
    "Quantizer",
    "Reference",
    "TokenSpec",
    "clamp_length",
]

#: ``"streaming"``: ``encoder_stream`` takes chunks of any length; ``"offline"``: the encoder
#: needs the whole signal (``encode`` only, the plugin supplies ``encode_offline``); ``"none"``:
#: a pure decoder.
EncoderKind = Literal["streaming", "offline", "none"]
#: ``"exact"``: ``decoder_stream()`` equals the offline decode; ``"windowed"``: every output
#: depends on every frame, so only ``mode="windowed"`` streams (the plugin supplies
#: ``decode_offline``).
DecoderKind = Literal["exact", "windowed"]

Length = TypeVar("Length", int, Tensor)


def clamp_length(length: Length) -> Length:
    """``max(0, length)`` for an int or an integer tensor."""
    if isinstance(length, Tensor):
        return length.clamp(min=0)
    return max(0, length)


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


class Quantizer(Protocol):
    """Continuous encoder output ↔ codes, one call at a time (no stream state).

    ``options`` is what the model's ``encoder_options`` parsed for the stream (a code-book
    count for residual VQs)."""

    def encode(self, latents: Tensor, options: Any) -> Any:
        """``[B, D, n]`` latents → the codes of those ``n`` frames."""
        ...

    def decode(self, codes: Any) -> Tensor:
        """Codes of ``n`` frames → ``[B, D, n]`` latents for the decoder."""
        ...


class CodeFormat:
    """How a model's codes are held. The defaults suit one tensor ``[B, ..., frames]``.

    ``check`` validates what a caller passes and moves it to the model's device; the rest is
    the algebra streams and files need. ``options`` in :meth:`empty` is what the model's
    ``encoder_options`` parsed (it may fix the code-book count).
    """

    def empty(self, batch_size: int, options: Any, *, device: torch.device, dtype: torch.dtype) -> Any:
        raise NotImplementedError

    def check(self, codes: Any, batch_size: int | None, *, model: str, device: torch.device, dtype: torch.dtype) -> Any:
        raise NotImplementedError

    def layout(self, codes: Any) -> Hashable:
        """What must stay the same between pushes of one stream (a code-book count)."""
        return None

    def batch_size(self, codes: Any) -> int:
        return int(codes.shape[0])

    def num_frames(self, codes: Any) -> int:
        """Frames of codes (of the finest level for multi-level codes)."""
        return int(codes.shape[-1])

    def slice(self, codes: Any, start: int, end: int) -> Any:
        """Frames ``start:end`` (in units of :meth:`num_frames`)."""
        return codes[..., start:end]

    def concat(self, parts: Sequence[Any]) -> Any:
        """Join chunks along time (``None`` parts are skipped)."""
        return torch.cat([p for p in parts if p is not None], dim=-1)

    def to_arrays(self, codes: Any) -> list[Tensor]:
        """The tensors a codes file stores (see :mod:`codecstream.codes_file`)."""
        return [codes]

    def from_arrays(self, arrays: list[Tensor]) -> Any:
        """Inverse of :meth:`to_arrays`."""
        return arrays[0]


class IndexCodes(CodeFormat):
    """``[B, K, frames]`` int64 codes in ``[0, codebook_size)``, ``1 <= K <= max_codebooks``.

    Args:
        default_codebooks: ``K`` of empty codes when the options do not say (default: all).
        allowed_counts: the only ``K`` the decoder takes, with what each means (Vocos-EnCodec:
            ``{8: "6 kbps", ...}``); ``None`` for any ``K`` up to the maximum.
    """

    def __init__(
        self,
        codebook_size: int,
        max_codebooks: int,
        *,
        default_codebooks: int | None = None,
        allowed_counts: dict[int, str] | None = None,
    ) -> None:
        self.codebook_size = codebook_size
        self.max_codebooks = max_codebooks
        self.default_codebooks = default_codebooks or max_codebooks
        self.allowed_counts = allowed_counts

    def empty(self, batch_size: int, options: Any, *, device: torch.device, dtype: torch.dtype) -> Tensor:
        books = options if isinstance(options, int) else self.default_codebooks
        return torch.zeros(batch_size, books, 0, dtype=torch.long, device=device)

    def check(self, codes: Any, batch_size: int | None, *, model: str, device: torch.device, dtype: torch.dtype) -> Tensor:
        checked = check_code_tensor(
            codes, codebook_size=self.codebook_size, max_codebooks=self.max_codebooks, device=device, batch_size=batch_size
        )
        if self.allowed_counts is not None and checked.shape[1] not in self.allowed_counts:
            offered = ", ".join(f"{k} ({meaning})" for k, meaning in self.allowed_counts.items())
            raise CodeRangeError(f"{model} decodes {offered} code-books, got {checked.shape[1]}")
        return checked

    def layout(self, codes: Tensor) -> Hashable:
        return int(codes.shape[1])


class FeatureCodes(CodeFormat):
    """``[B, channels, frames]`` float features or latents (a mel spectrogram, VAE latents).

    Args:
        what: how error messages name them (``"log-mel features"``, ``"latents"``).
    """

    def __init__(self, channels: int, what: str = "features") -> None:
        self.channels = channels
        self.what = what

    def empty(self, batch_size: int, options: Any, *, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.zeros(batch_size, self.channels, 0, dtype=dtype, device=device)

    def check(self, codes: Any, batch_size: int | None, *, model: str, device: torch.device, dtype: torch.dtype) -> Tensor:
        return check_feature_tensor(
            codes, channels=self.channels, model=model, dtype=dtype, device=device, batch_size=batch_size, what=self.what
        )


@dataclass(frozen=True)
class Reference:
    """An upstream implementation holding a model's weights, for benchmarks.

    Attributes:
        package: the upstream package's name.
        roundtrip: its offline encode + decode of the benchmark audio.
        decode: its offline decode of the benchmark codes (or features).
    """

    package: str
    roundtrip: Callable[[], Tensor]
    decode: Callable[[], Tensor]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model and read its published checkpoints.

    Attributes:
        name: the registered name (``"encodec-24khz"``).
        summary: one line for ``list_models`` and ``--help``.
        build: ``config -> Codec`` with freshly initialised parameters.
        default_config: the published architecture's config.
        read_weights: ``path -> (config, state_dict)`` for a checkpoint file or directory in the
            official layout; the state dict uses the model's own key names (weight norm may
            still be unfolded: ``load`` folds it).
        hub_id: default Hugging Face repository for ``weights=None``.
        hub_patterns: files to fetch from the hub (glob patterns).
        ignore_keys: regexes of checkpoint keys that are training-only and may be dropped.
        locate_default: where the published weights are when they come with an installed
            package rather than from the hub (``weights=None`` uses it first).
        reference: for benchmarks, where to find ``(model, audio, codes, options) -> Reference``
            (the upstream package's offline model with the same weights; raises ImportError when
            that package is not installed): a ``"module:function"`` string, imported only by
            ``codecstream bench`` (so listing and loading models never imports the upstream
            package nor patches it), or the function itself.
    """

    name: str
    summary: str
    build: Callable[[Any], Any]
    default_config: Any
    read_weights: Callable[[Path], tuple[Any, dict[str, Tensor]]]
    hub_id: str | None = None
    hub_patterns: tuple[str, ...] = ()
    ignore_keys: tuple[str, ...] = field(default=())
    locate_default: Callable[[], Path] | None = None
    reference: str | Callable[[Any, Tensor, Any, dict[str, Any]], Reference] | None = None
