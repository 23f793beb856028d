"""DACVAE hyper-parameters: the keys of the constructor the seed's ``dac-vae-small.json`` feeds
(``DACVAE(**config)`` in the ``optimizerai/vocos`` fork), with that constructor's defaults for
keys a file leaves out."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["DacVaeConfig", "DACVAE_SMALL", "DACVAE_MID", "DACVAE_LARGE"]


@dataclass(frozen=True)
class DacVaeConfig:
    """``encoder_dim`` channels after the input conv, doubled by each of ``encoder_rates``;
    ``latent_dim`` per channel (None: the encoder's last width); ``decoder_dim`` channels after
    the decoder's input conv, halved by each of ``decoder_rates``. ``channels`` (ours, not the
    fork's: the seed wrapper folds stereo) is how many audio channels are each encoded as a mono
    signal and concatenated, so latents have ``channels · latent_dim`` values per frame."""

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    sample_rate: int = 48_000
    channels: int = 2

    def __post_init__(self) -> None:
        problems = []
        if any(r < 2 or r % 2 for r in (*self.encoder_rates, *self.decoder_rates)):
            problems.append("every rate must be even (the shortcuts group rate/2 samples)")
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            problems.append(f"encoder and decoder hops differ ({math.prod(self.encoder_rates)} vs {math.prod(self.decoder_rates)})")
        if self.encoder_width % self.latent_size:
            problems.append(f"the encoder's last width {self.encoder_width} is not a multiple of latent_dim {self.latent_size}")
        if self.decoder_dim % self.latent_size or self.decoder_dim % 2 ** len(self.decoder_rates):
            problems.append(f"decoder_dim {self.decoder_dim} must be a multiple of latent_dim and halve {len(self.decoder_rates)} times")
        if self.channels < 1 or self.sample_rate < 1:
            problems.append("channels and sample_rate must be positive")
        if problems:
            raise CheckpointMismatchError("not a DACVAE configuration: " + "; ".join(problems))

    @property
    def encoder_width(self) -> int:
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def latent_size(self) -> int:
        """Latent values per frame of one audio channel."""
        return self.latent_dim if self.latent_dim is not None else self.encoder_width

    @property
    def hop_length(self) -> int:
        return math.prod(self.encoder_rates)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DacVaeConfig":
        """A ``dac-vae-*.json``: the constructor's keyword arguments (unknown keys are refused,
        as ``DACVAE(**config)`` would)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointMismatchError(f"not a DACVAE config: unknown keys {unknown}")
        try:
            values = {k: tuple(int(r) for r in v) if k.endswith("_rates") else (None if v is None else int(v)) for k, v in data.items()}
        except (TypeError, ValueError) as exc:
            raise CheckpointMismatchError(f"not a DACVAE config: {exc}") from exc
        return cls(**values)  # type: ignore[arg-type]


#: The fork's three presets. The seed's ``dac-vae-small`` is taken to be the small one; its JSON
#: is not public, so this is inferred (a config file next to the weights overrides it).
DACVAE_SMALL = DacVaeConfig(encoder_rates=(2, 4, 4, 8, 8), latent_dim=1024, decoder_dim=2048, decoder_rates=(8, 8, 4, 4, 2))
DACVAE_MID = DacVaeConfig(encoder_rates=(2, 2, 4, 8, 8), latent_dim=1024, decoder_dim=2048, decoder_rates=(8, 8, 4, 2, 2))
DACVAE_LARGE = DacVaeConfig(encoder_rates=(2, 4, 8, 8), latent_dim=1024, decoder_dim=2048, decoder_rates=(8, 8, 4, 2))
