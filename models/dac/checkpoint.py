"""Reading DAC checkpoints: the original ``weights*.pth`` (``{"state_dict", "metadata":
{"kwargs"}}``, module names kept here) and the transformers layout (``config.json`` +
``model.safetensors``: ``encoder.conv1``, ``block.{i}.res_unit{j}``, ...)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors

from .config import DacConfig

__all__ = ["read_dac_checkpoint", "transformers_to_plugin", "hf_snake_codec_keys"]

_UNIT = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}


def hf_snake_codec_keys(
    state: dict[str, Tensor], stages: int, *, encoder: str, decoder: str, inner: str
) -> dict[str, Tensor]:
    """Rename the Hugging Face layout of a DAC-style encoder/decoder (transformers' ``DacModel``,
    diffusers' ``AutoencoderOobleck``: ``encoder.conv1``, ``block.{i}.res_unit{j}.conv1``, ...)
    to the indexed layout of :mod:`.layers` (``{encoder}.N.{inner}.M...``); other keys pass."""
    rules = [
        (r"encoder\.conv1\.(.+)", lambda m: f"{encoder}.0.{m[1]}"),
        (r"encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
         lambda m: f"{encoder}.{int(m[1]) + 1}.{inner}.{int(m[2]) - 1}.block.{_UNIT[m[3]]}.{m[4]}"),
        (r"encoder\.block\.(\d+)\.(snake1|conv1)\.(.+)",
         lambda m: f"{encoder}.{int(m[1]) + 1}.{inner}.{3 if m[2] == 'snake1' else 4}.{m[3]}"),
        (r"encoder\.snake1\.(.+)", lambda m: f"{encoder}.{stages + 1}.{m[1]}"),
        (r"encoder\.conv2\.(.+)", lambda m: f"{encoder}.{stages + 2}.{m[1]}"),
        (r"decoder\.conv1\.(.+)", lambda m: f"{decoder}.0.{m[1]}"),
        (r"decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
         lambda m: f"{decoder}.{int(m[1]) + 1}.{inner}.{int(m[2]) + 1}.block.{_UNIT[m[3]]}.{m[4]}"),
        (r"decoder\.block\.(\d+)\.(snake1|conv_t1)\.(.+)",
         lambda m: f"{decoder}.{int(m[1]) + 1}.{inner}.{0 if m[2] == 'snake1' else 1}.{m[3]}"),
        (r"decoder\.snake1\.(.+)", lambda m: f"{decoder}.{stages + 1}.{m[1]}"),
        (r"decoder\.conv2\.(.+)", lambda m: f"{decoder}.{stages + 2}.{m[1]}"),
    ]
    compiled = [(re.compile(pattern), rename) for pattern, rename in rules]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, rename in compiled:
            if m := pattern.fullmatch(key):
                key = rename(m)
                break
        out[key] = value
    return out


def transformers_to_plugin(state: dict[str, Tensor], config: DacConfig) -> dict[str, Tensor]:
    return hf_snake_codec_keys(
        state, len(config.downsampling_ratios), encoder="encoder.block", decoder="decoder.model", inner="block"
    )


def read_dac_checkpoint(path: Path, default: DacConfig) -> tuple[DacConfig, dict[str, Tensor]]:
    config = default
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            config = DacConfig.from_transformers(json.loads(config_file.read_text()))
        weights = find_file(path, ["model.safetensors", "weights*.pth", "*.pth", "*.safetensors"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no DAC weights (model.safetensors or weights*.pth)")
        path = weights
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
