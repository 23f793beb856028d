"""Reading Vocos checkpoints: ``config.yaml`` + ``pytorch_model.bin`` as published on the hub
(``charactr/vocos-mel-24khz``, ``charactr/vocos-encodec-24khz``), or a safetensors file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors, rename_keys

from ..blocks.seanet import seanet_keys as plugin_keys
from ..encodec.checkpoint import read_encodec_checkpoint
from ..encodec.config import ENCODEC_24KHZ
from .config import VocosConfig

__all__ = ["read_vocos_checkpoint"]

_RULES = [
    (r"^backbone\.convnext\.(\d+)\.", r"decoder.backbone.convnext.\1.block."),
    (r"^backbone\.", "decoder.backbone."),
    (r"^head\.", "decoder.head."),
    (r"^feature_extractor\.mel_spec\.spectrogram\.window$", "encoder.window"),
    (r"^feature_extractor\.mel_spec\.mel_scale\.fb$", "encoder.filterbank"),
    (r"^feature_extractor\.codebook_weights$", "codebook_weights"),
]


def read_vocos_checkpoint(path: Path, default: VocosConfig) -> tuple[VocosConfig, dict[str, Tensor]]:
    """``(config, state dict in plugin key names)``.

    For the EnCodec variant the published ``pytorch_model.bin`` holds no EnCodec encoder; it is
    read from an EnCodec checkpoint in the same directory when there is one; without it the
    model decodes codes but cannot encode audio (``config.with_encodec_encoder`` is False).
    """
    config = default
    directory = path if path.is_dir() else path.parent
    if path.is_dir():
        config_file = directory / "config.yaml"
        if config_file.is_file():
            import yaml

            try:
                config = VocosConfig.from_yaml_dict(yaml.safe_load(config_file.read_text()))
            except yaml.YAMLError as exc:
                raise CheckpointMismatchError(f"{config_file} is not valid YAML: {exc}") from exc
        weights = find_file(directory, ["pytorch_model.bin", "model.safetensors", "*.safetensors"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no Vocos weights (pytorch_model.bin or *.safetensors)")
        path = weights
    raw = read_tensors(path)
    state = {k: v for k, v in raw.items() if isinstance(v, Tensor)}  # the published .bin may hold non-tensors
    if not any(k.startswith(("backbone.", "decoder.backbone.")) for k in state):
        raise CheckpointMismatchError(f"{path} is not a Vocos checkpoint (no backbone.* tensors)")
    if config.features != default.features:
        raise CheckpointMismatchError(
            f"{path} is a Vocos model on {config.features} features, not on {default.features} features"
        )
    state = rename_keys(state, _RULES)
    # An EnCodec state dict saved inside the Vocos file (as the vocos package's own state_dict has it).
    encodec_keys = {k[len("feature_extractor.encodec.") :]: v for k, v in state.items() if k.startswith("feature_extractor.encodec.")}
    state = {k: v for k, v in state.items() if not k.startswith("feature_extractor.encodec.")}
    if config.features == "encodec":
        if not encodec_keys:
            encodec_file = find_file(directory, ["encodec_24khz*.th"])
            if encodec_file is not None:
                _, encodec_keys = read_encodec_checkpoint(encodec_file, ENCODEC_24KHZ)
        encodec_keys = plugin_keys(encodec_keys)
        for key, value in encodec_keys.items():
            if key.startswith("encoder."):
                state["encodec_encoder." + key[len("encoder.") :]] = value
            elif key.startswith("quantizer."):
                state["encodec_" + key] = value
        if not any(k.startswith("encodec_encoder.") for k in state):
            config = replace(config, with_encodec_encoder=False)  # decodes codes; cannot encode audio
    return config, state
