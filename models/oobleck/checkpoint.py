"""Reading Oobleck checkpoints: diffusers (``vae/config.json`` +
``vae/diffusion_pytorch_model.safetensors``) and stable-audio-tools (``model_config.json`` +
``model.safetensors`` / ``model.ckpt``: a standalone autoencoder, ``encoder.layers.N...``, or a
whole Stable Audio model with the VAE under ``pretransform.model.``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors

from ..blocks.snake import hf_snake_codec_keys
from .config import OobleckConfig

__all__ = ["read_oobleck_checkpoint"]

_PRETRANSFORM = "pretransform.model."
# stable-audio-tools names a residual unit's branch ``layers``; ours (a Residual) calls it ``block``.
_SAT_RESIDUAL = re.compile(r"^(encoder\.layers\.\d+\.layers\.[012]|decoder\.layers\.\d+\.layers\.[234])\.layers\.")


def _from_stable_audio_tools(state: dict[str, Tensor]) -> dict[str, Tensor]:
    if any(k.startswith(_PRETRANSFORM) for k in state):
        state = {k[len(_PRETRANSFORM):]: v for k, v in state.items() if k.startswith(_PRETRANSFORM)}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(("encoder.", "decoder.")):
            continue  # the bottleneck has no weights; anything else is not the VAE
        key = _SAT_RESIDUAL.sub(r"\1.block.", key)
        if key.endswith((".alpha", ".beta")) and value.dim() == 1:
            value = value.reshape(1, -1, 1)  # SnakeBeta stores [C]; ours is [1, C, 1]
        out[key] = value
    return out


def read_oobleck_checkpoint(path: Path, default: OobleckConfig) -> tuple[OobleckConfig, dict[str, Tensor]]:
    config = default
    if path.is_dir():
        if (path / "vae").is_dir():  # a diffusers pipeline: the VAE is its own folder
            path = path / "vae"
        if (path / "config.json").is_file():
            config = OobleckConfig.from_diffusers(json.loads((path / "config.json").read_text()))
        elif (path / "model_config.json").is_file():
            config = OobleckConfig.from_stable_audio_tools(json.loads((path / "model_config.json").read_text()))
        weights = find_file(path, ["diffusion_pytorch_model.safetensors", "model.safetensors", "*.safetensors", "*.ckpt", "*.pth"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no Oobleck weights (*.safetensors or *.ckpt)")
        path = weights
    raw = read_tensors(path)
    if isinstance(raw.get("state_dict"), dict):  # a Lightning .ckpt
        raw = dict(raw["state_dict"])
    state = {k: v for k, v in raw.items() if isinstance(v, Tensor)}
    if any(k.startswith("encoder.conv1.") or k.startswith("decoder.conv1.") for k in state):
        return config, hf_snake_codec_keys(
            state, len(config.downsampling_ratios), encoder="encoder.layers", decoder="decoder.layers", inner="layers"
        )
    state = _from_stable_audio_tools(state)
    if not state:
        raise CheckpointMismatchError(f"{path} holds no Oobleck encoder or decoder tensors")
    return config, state
