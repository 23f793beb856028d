"""Reading SNAC checkpoints: ``config.json`` + ``pytorch_model.bin`` as on the hub
(``hubertsiuzdak/snac_24khz`` ...), weight norm in either key style, or safetensors."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors

from .config import SnacConfig

__all__ = ["read_snac_checkpoint"]



def read_snac_checkpoint(path: Path, default: SnacConfig) -> tuple[SnacConfig, dict[str, Tensor]]:
    config = default
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            try:
                config = SnacConfig.from_json(json.loads(config_file.read_text()))
            except (json.JSONDecodeError, TypeError) as exc:
                raise CheckpointMismatchError(f"{config_file} is not a SNAC config: {exc}") from exc
        weights = find_file(path, ["pytorch_model.bin", "model.safetensors", "*.safetensors"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no SNAC weights (pytorch_model.bin or *.safetensors)")
        path = weights
    state = {k: v for k, v in read_tensors(path).items() if isinstance(v, Tensor)}
    if not any(k.startswith("quantizer.quantizers.") for k in state):
        raise CheckpointMismatchError(f"{path} is not a SNAC checkpoint (no quantizer.quantizers.* tensors)")
    return config, state  # the module tree mirrors SNAC's, so keys need no renaming
