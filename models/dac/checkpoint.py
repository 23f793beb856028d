"""Reading DAC checkpoints: the original ``weights*.pth`` (``{"state_dict", "metadata":
{"kwargs"}}``, module names kept here) and the transformers layout (``config.json`` +
``model.safetensors``: ``encoder.conv1``, ``block.{i}.res_unit{j}``, ...), and the seed card's
``dac.json`` (the constructor's arguments, as ``metadata.kwargs``) beside ``dac.safetensors``."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_json_object, read_tensors

from ..blocks.snake import hf_snake_codec_keys
from .config import DacConfig

__all__ = ["read_dac_checkpoint", "transformers_to_plugin"]

def transformers_to_plugin(state: dict[str, Tensor], config: DacConfig) -> dict[str, Tensor]:
    return hf_snake_codec_keys(
        state, len(config.downsampling_ratios), encoder="encoder.block", decoder="decoder.model", inner="block"
    )


def read_dac_checkpoint(path: Path, default: DacConfig) -> tuple[DacConfig, dict[str, Tensor]]:
    config = default
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            config = DacConfig.from_transformers(read_json_object(config_file, "a DAC config"))
        weights = find_file(path, ["model.safetensors", "weights*.pth", "*.pth", "*.safetensors"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no DAC weights (model.safetensors or weights*.pth)")
        path = weights
    if not (path.parent / "config.json").is_file() and path.with_suffix(".json").is_file():
        # The seed's loader: ``dac.json`` (DAC's constructor arguments) beside ``dac.safetensors``.
        config = DacConfig.from_original(read_json_object(path.with_suffix(".json"), "DAC's constructor arguments"))
    raw = read_tensors(path)
    if isinstance(raw.get("state_dict"), dict):  # the original release format
        kwargs = (raw.get("metadata") or {}).get("kwargs") if isinstance(raw.get("metadata"), dict) else None
        if kwargs:
            config = DacConfig.from_original(kwargs)
        raw = dict(raw["state_dict"])
    state = {k: v for k, v in raw.items() if isinstance(v, Tensor)}
    if not any(k.startswith("quantizer.quantizers.") for k in state):
        raise CheckpointMismatchError(f"{path} is not a DAC checkpoint (no quantizer.quantizers.* tensors)")
    if any(k.startswith("encoder.conv1.") for k in state):
        state = transformers_to_plugin(state, config)
    return config, state
