"""Reading NeuCodec checkpoints: neuphonic's ``pytorch_model.bin`` (+ ``meta.yaml``; module
names kept here: ``semantic_model.*`` (w2v-BERT 2.0, all 24 layers: 16 are kept),
``SemanticEncoder_module``, ``CodecEnc`` with weight norm, ``generator``, ``fc_prior``,
``fc_post_a``) and the transformers layout (``config.json`` + ``model.safetensors``:
``semantic_encoder``, ``semantic_adapter``, ``acoustic_encoder``, ``fc_encoder``, ``quantizer``,
``acoustic_decoder``)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, fold_weight_norm, read_tensors, rename_keys

from .config import NeuCodecConfig

__all__ = ["read_neucodec_checkpoint", "transformers_to_plugin"]

# Tensors of the published file this plugin does not run: the unused semantic decoder head,
# w2v-BERT's masking vector, and fixed filters/windows it recomputes.
_DROPPED = re.compile(
    r"(fc_post_s|SemanticDecoder|masked_spec_embed|\.upsample\.filter$|\.downsample\.lowpass\.filter$"
    r"|^generator\.quantizer\.(layers|scales|_levels|_basis|implicit)|^semantic_model\.(adapter|intermediate_ffn))"
)

_UNIT = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}
_TRANSFORMERS_RULES = [
    (r"^semantic_encoder\.", "semantic_model."),
    (r"^semantic_adapter\.conv1\.", "SemanticEncoder_module.initial_conv."),
    (r"^semantic_adapter\.conv2\.", "SemanticEncoder_module.residual_blocks.1."),
    (r"^semantic_adapter\.conv3\.", "SemanticEncoder_module.residual_blocks.3."),
    (r"^semantic_adapter\.conv4\.", "SemanticEncoder_module.final_conv."),
    (r"^fc_encoder\.", "fc_prior."),
    (r"^quantizer\.(project_in|project_out)\.", r"generator.quantizer.\1."),
    (r"^acoustic_decoder\.fc\.", "fc_post_a."),
    (r"^acoustic_decoder\.(embed|prior_net|post_net)\.", r"generator.backbone.\1."),
    (r"^acoustic_decoder\.layers\.(\d+)\.self_attn\.o_proj\.", r"generator.backbone.transformers.\1.att.c_proj."),
    (r"^acoustic_decoder\.layers\.(\d+)\.mlp\.", r"generator.backbone.transformers.\1.mlp."),
    (r"^acoustic_decoder\.layers\.(\d+)\.input_layernorm\.", r"generator.backbone.transformers.\1.att_norm."),
    (r"^acoustic_decoder\.layers\.(\d+)\.post_attention_layernorm\.", r"generator.backbone.transformers.\1.ffn_norm."),
    (r"^acoustic_decoder\.norm\.", "generator.backbone.final_layer_norm."),
    (r"^acoustic_decoder\.head\.linear\.", "generator.head.out."),
    (r"^acoustic_encoder\.conv1\.", "CodecEnc.conv_blocks.0."),
    (r"^acoustic_encoder\.snake1\.", "CodecEnc.conv_final_block.0."),
    (r"^acoustic_encoder\.conv2\.", "CodecEnc.conv_final_block.1."),
]


def transformers_to_plugin(state: dict[str, Tensor]) -> dict[str, Tensor]:
    state = rename_keys(state, _TRANSFORMERS_RULES)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if m := re.fullmatch(r"acoustic_encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)", key):
            key = f"CodecEnc.conv_blocks.{int(m[1]) + 1}.block.{int(m[2]) - 1}.block.{_UNIT[m[3]]}.{m[4]}"
        elif m := re.fullmatch(r"acoustic_encoder\.block\.(\d+)\.(snake1|conv1)\.(.+)", key):
            key = f"CodecEnc.conv_blocks.{int(m[1]) + 1}.block.{3 if m[2] == 'snake1' else 4}.{m[3]}"
        out[key] = value
    # transformers splits the fused attention projection; the plugin keeps neucodec's fused one.
    for key in [k for k in out if k.endswith(".self_attn.q_proj.weight") and k.startswith("acoustic_decoder.")]:
        layer = key.split(".")[2]
        prefix = f"acoustic_decoder.layers.{layer}.self_attn."
        fused = torch.cat([out.pop(prefix + f"{p}_proj.weight") for p in "qkv"], dim=0)
        out[f"generator.backbone.transformers.{layer}.att.c_attn.weight"] = fused
    return out


def _prepare(state: dict[str, Tensor], config: NeuCodecConfig) -> dict[str, Tensor]:
    state = {k: v for k, v in state.items() if not _DROPPED.search(k)}
    kept = config.semantic.num_layers
    out: dict[str, Tensor] = {}
    for key, value in fold_weight_norm(state).items():
        if m := re.match(r"semantic_model\.encoder\.layers\.(\d+)\.", key):
            if int(m[1]) >= kept:
                continue  # w2v-BERT layers past the one NeuCodec reads
        if re.search(r"\.act\.(alpha|beta)$", key) and value.dim() == 1:
            value = value.reshape(1, -1, 1)
        out[key] = value
    window = "generator.head.istft.window"
    if window not in out:  # transformers recomputes it rather than storing it
        out[window] = torch.hann_window(config.n_fft)
    return out


def read_neucodec_checkpoint(path: Path, default: NeuCodecConfig) -> tuple[NeuCodecConfig, dict[str, Tensor]]:
    """``(config, state in plugin names)``; ``config.with_encoder`` says whether the encoder's
    weights (w2v-BERT among them) are there."""
    config = default
    if path.is_dir():
        if (path / "config.json").is_file():
            config = NeuCodecConfig.from_transformers(json.loads((path / "config.json").read_text()))
        weights = find_file(path, ["model.safetensors", "pytorch_model.bin", "*.safetensors", "*.bin", "*.pt"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no NeuCodec weights (pytorch_model.bin or model.safetensors)")
        path = weights
    raw = read_tensors(path)
    if isinstance(raw.get("state_dict"), dict):
        raw = dict(raw["state_dict"])
    state = {k: v for k, v in raw.items() if isinstance(v, Tensor)}
    if any(k.startswith("acoustic_decoder.") for k in state):
        state = transformers_to_plugin(state)
    if not any(k.startswith("generator.backbone.") for k in state):
        raise CheckpointMismatchError(f"{path} is not a NeuCodec checkpoint (no generator.backbone.* tensors)")
    state = _prepare(state, config)
    layers = {int(m[1]) for k in state if (m := re.match(r"semantic_model\.encoder\.layers\.(\d+)\.", k))}
    with_encoder = any(k.startswith("CodecEnc.") for k in state) and bool(layers)
    if with_encoder and len(layers) < config.semantic.num_layers:
        config = replace(config, semantic=replace(config.semantic, num_layers=len(layers)))
    if not with_encoder:
        encoder = re.compile(r"^(semantic_model|SemanticEncoder_module|CodecEnc|fc_prior)\.")
        state = {k: v for k, v in state.items() if not encoder.match(k)}
        config = replace(config, with_encoder=False)
    return config, state
