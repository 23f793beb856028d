"""Reading EnCodec checkpoints: the official ``encodec_24khz-d7cc33bc.th`` state dict and the
transformers layout (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors

from ..blocks.seanet import seanet_keys as plugin_keys

from .config import EncodecConfig

__all__ = ["read_encodec_checkpoint", "plugin_keys", "TRAINING_ONLY_KEYS"]

# Buffers used only while training the code-books (k-means state and EMA statistics).
TRAINING_ONLY_KEYS = (r"\.inited$", r"\.cluster_size$", r"\.embed_avg$")

def read_encodec_checkpoint(path: Path, default: EncodecConfig) -> tuple[EncodecConfig, dict[str, Tensor]]:
    """``(config, state dict in this plugin's key names)`` from a file or directory."""
    config = default
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            config = EncodecConfig.from_transformers(json.loads(config_file.read_text()))
        weights = find_file(path, ["model.safetensors", "pytorch_model.bin", "encodec_*.th", "*.th", "*.safetensors"])
        if weights is None:
            raise WeightsUnavailableError(
                f"{path} has no EnCodec weights (looked for model.safetensors, pytorch_model.bin, *.th)"
            )
        path = weights
    state = read_tensors(path)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = dict(state["state_dict"])
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointMismatchError(f"{path} is not an EnCodec state dict (non-tensor entries such as {bad[0]!r})")
    if config.norm == "weight_norm" and any(k.endswith(".norm.weight") for k in state):
        raise CheckpointMismatchError(f"{path} has GroupNorm weights: it is a time-group-norm (48 kHz-style) EnCodec")
    return config, plugin_keys(state, time_group_norm=config.norm == "time_group_norm")
