"""Reading Mimi checkpoints: kyutai's ``tokenizer-*.safetensors`` (moshi module names) and the
transformers layout (``config.json`` + ``model.safetensors``, as ``kyutai/mimi``).

Two conversions beyond renaming: code-words are stored as ``embedding_sum`` / ``embed_sum`` and
``cluster_usage`` (the code-word is their ratio), and transformers splits the fused q/k/v
projection with q and k rows permuted for its half-split rotary layout; this plugin keeps
moshi's fused projection and interleaved rotary pairs, so those rows are permuted back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from codecstream.errors import CheckpointMismatchError, WeightsUnavailableError
from codecstream.weights import find_file, read_tensors, rename_keys

from ..blocks.seanet import seanet_keys
from .config import MimiConfig

__all__ = ["read_mimi_checkpoint", "CODEBOOK_EPSILON"]

CODEBOOK_EPSILON = 1e-5  # cluster_usage is clamped to this before dividing, as the references

_MOSHI_RULES = [
    (r"^(encoder|decoder)_transformer\.transformer\.", r"\1_transformer."),
    (r"\.self_attn\.in_proj_weight$", ".self_attn.in_proj.weight"),
    (r"\.self_attn\.in_projs\.0\.", ".self_attn.in_proj."),
    (r"\.self_attn\.out_projs\.0\.", ".self_attn.out_proj."),
    (r"^downsample\.conv\.conv\.conv\.", "downsample."),
    (r"^upsample\.convtr\.convtr\.convtr\.", "upsample."),
    (r"^quantizer\.(rvq_first|rvq_rest)\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.\1.layers.\2."),
]
_TRANSFORMERS_RULES = [
    (r"\.input_layernorm\.", ".norm1."),
    (r"\.post_attention_layernorm\.", ".norm2."),
    (r"\.mlp\.fc1\.", ".linear1."),
    (r"\.mlp\.fc2\.", ".linear2."),
    (r"\.self_attn_layer_scale\.", ".layer_scale_1."),
    (r"\.mlp_layer_scale\.", ".layer_scale_2."),
    (r"\.self_attn\.o_proj\.", ".self_attn.out_proj."),
    (r"^(downsample|upsample)\.conv\.", r"\1."),
    (r"^quantizer\.semantic_residual_vector_quantizer\.", "quantizer.rvq_first."),
    (r"^quantizer\.acoustic_residual_vector_quantizer\.", "quantizer.rvq_rest."),
    (r"^(quantizer\.rvq_\w+\.layers\.\d+)\.codebook\.", r"\1."),
]


def _interleaved_rows(weight: Tensor, num_heads: int) -> Tensor:
    """Undo transformers' q/k row permutation: per head, rows ``[r0..r(d/2-1), i0..i(d/2-1)]``
    back to interleaved pairs ``[r0, i0, r1, i1, ...]``."""
    out_dim, in_dim = weight.shape
    head_dim = out_dim // num_heads
    return weight.view(num_heads, 2, head_dim // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def _fuse_attention(state: dict[str, Tensor], num_heads: int) -> dict[str, Tensor]:
    out = dict(state)
    for key in [k for k in state if k.endswith(".self_attn.q_proj.weight")]:
        prefix = key[: -len("q_proj.weight")]
        q = _interleaved_rows(out.pop(prefix + "q_proj.weight"), num_heads)
        k = _interleaved_rows(out.pop(prefix + "k_proj.weight"), num_heads)
        v = out.pop(prefix + "v_proj.weight")
        out[prefix + "in_proj.weight"] = torch.cat([q, k, v], dim=0)
    return out


def _codewords(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith((".embedding_sum", ".embed_sum")):
            prefix = key.rsplit(".", 1)[0]
            usage = state.get(prefix + ".cluster_usage")
            if usage is None:
                raise CheckpointMismatchError(f"{key} has no matching cluster_usage")
            out[prefix + ".embed"] = value / usage.clamp(min=CODEBOOK_EPSILON)[:, None]
        elif not key.endswith((".cluster_usage", "._initialized", ".initialized")):
            out[key] = value
    return out


def read_mimi_checkpoint(path: Path, default: MimiConfig) -> tuple[MimiConfig, dict[str, Tensor]]:
    config = default
    if path.is_dir():
        if (path / "config.json").is_file():
            config = MimiConfig.from_transformers(json.loads((path / "config.json").read_text()))
        weights = find_file(path, ["model.safetensors", "tokenizer-*.safetensors", "*.safetensors", "*.bin", "*.pt"])
        if weights is None:
            raise WeightsUnavailableError(f"{path} has no Mimi weights (model.safetensors or tokenizer-*.safetensors)")
        path = weights
    raw = read_tensors(path)
    if isinstance(raw.get("model"), dict):  # moshi's torch checkpoints: {"model": state}
        raw = dict(raw["model"])
    state = {k: v for k, v in raw.items() if isinstance(v, Tensor)}
    if not any(k.startswith("quantizer.") for k in state) or not any("transformer." in k for k in state):
        raise CheckpointMismatchError(f"{path} is not a Mimi checkpoint (no quantizer or transformer tensors)")
    if any(k.startswith("encoder.model.") for k in state):
        state = seanet_keys(rename_keys(state, _MOSHI_RULES))
    elif any(k.startswith("encoder.layers.") for k in state):
        state = _fuse_attention(seanet_keys(rename_keys(state, _TRANSFORMERS_RULES)), config.num_heads)
    state = _codewords(state)
    unknown = [k for k in state if re.search(r"lora|in_projs\.[1-9]", k)]
    if unknown:
        raise CheckpointMismatchError(f"{path} has tensors this Mimi does not use, such as {unknown[0]!r}")
    return config, state
