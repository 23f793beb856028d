"""Reading DACVAE checkpoints as the seed's loader does: ``{name}.json`` (the constructor's
keyword arguments) and ``{name}.safetensors`` (the whole state dict; weight-normed convs as
``parametrizations.weight.original0/1``, folded at load) — or a file of our own export, whose
convs hold plain ``.weight``."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_json_object, read_tensors

from .config import DacVaeConfig

__all__ = ["read_dacvae_checkpoint"]


def _config_beside(weights: Path) -> Path | None:
    for candidate in (weights.with_suffix(".json"), weights.parent / "config.json"):
        if candidate.is_file():
            return candidate
    return None


def read_dacvae_checkpoint(path: Path, default: DacVaeConfig) -> tuple[DacVaeConfig, dict[str, Tensor]]:
    if path.is_dir():
        weights = find_file(path, ["dac-vae-small.safetensors", "*.safetensors", "*.pth"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no DACVAE weights (dac-vae-small.safetensors)")
        path = weights
    config = default
    config_file = _config_beside(path)
    if config_file is not None:
        config = DacVaeConfig.from_json(read_json_object(config_file, "DACVAE's keyword arguments"))
    state = {k: v for k, v in read_tensors(path).items() if isinstance(v, Tensor)}
    if not any(k.startswith("encoder.init_conv.") for k in state) or not any(k.startswith("decoder.last_conv.") for k in state):
        raise CheckpointMismatchError(f"{path} is not a DACVAE checkpoint (no encoder.init_conv / decoder.last_conv tensors)")
    return config, state
