"""The semantic branch: w2v-BERT 2.0's conformer up to layer 16, then NeuCodec's adapter.

Module names are transformers' ``Wav2Vec2BertModel`` (``semantic_model.*``, as the published
checkpoint stores them) and neucodec's ``SemanticEncoder`` (``SemanticEncoder_module.*``).
Offline only: attention spans the whole utterance and the features are normalised over it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SemanticConfig

__all__ = ["W2vBert", "SemanticAdapter"]


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.silu(self.intermediate_dense(x)))


class RelativeKeyAttention(nn.Module):
    """Full self-attention whose scores add ``q · E[clamp(j - i, -left, right)]`` (a learnt
    embedding of the clamped key-query distance)."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_heads
        self.head_size = dim // config.num_heads
        self.left, self.right = config.left_max_positions, config.right_max_positions
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.distance_embedding = nn.Embedding(self.left + self.right + 1, self.head_size)

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, dim = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, frames, self.num_heads, self.head_size).transpose(1, 2)

        q, k, v = heads(self.linear_q(x)), heads(self.linear_k(x)), heads(self.linear_v(x))
        positions = torch.arange(frames, device=x.device)
        distance = (positions[None, :] - positions[:, None]).clamp(-self.left, self.right) + self.left
        table = self.distance_embedding(distance).to(q.dtype)  # [T, T, D]
        scale = self.head_size**-0.5
        bias = torch.einsum("bhld,lrd->bhlr", q, table) * scale
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        return self.linear_out(out.transpose(1, 2).reshape(batch, frames, dim))


class ConvolutionModule(nn.Module):
    """LayerNorm → 1x1 conv to 2C → GLU → causal depthwise conv → LayerNorm → swish → 1x1 conv."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        dim, eps = config.hidden_size, config.layer_norm_eps
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, config.conv_kernel_size, groups=dim, bias=False)
        self.depthwise_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.glu(self.pointwise_conv1(self.layer_norm(x).transpose(1, 2)), dim=1)
        h = self.depthwise_conv(F.pad(h, (self.depthwise_conv.kernel_size[0] - 1, 0)))
        h = F.silu(self.depthwise_layer_norm(h.transpose(1, 2)).transpose(1, 2))
        return self.pointwise_conv2(h).transpose(1, 2)


class ConformerLayer(nn.Module):
    """Half-step FFN, attention, convolution, half-step FFN, each residual; final LayerNorm."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        dim, eps = config.hidden_size, config.layer_norm_eps
        self.ffn1_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn1 = FeedForward(dim, config.intermediate_size)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.self_attn = RelativeKeyAttention(config)
        self.conv_module = ConvolutionModule(config)
        self.ffn2_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn2 = FeedForward(dim, config.intermediate_size)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        x = x + self.conv_module(x)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class FeatureProjection(nn.Module):
    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.feature_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.feature_dim, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.layer_norm(x))


class ConformerStack(nn.Module):
    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class W2vBert(nn.Module):
    """``[B, frames, 160]`` stacked features → ``[B, frames, 1024]`` hidden states after the
    last kept layer."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.feature_projection = FeatureProjection(config)
        self.encoder = ConformerStack(config)

    def forward(self, features: Tensor) -> Tensor:
        return self.encoder(self.feature_projection(features))


class SemanticAdapter(nn.Module):
    """``initial_conv`` → ReLU, conv, ReLU, conv (plus its input) → ``final_conv``; all k3.

    The reference's first ReLU runs in place, so the skip carries the rectified input too."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.initial_conv = nn.Conv1d(dim, dim, 3, padding=1, bias=False)
        self.residual_blocks = nn.Sequential(nn.ReLU(), nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv1d(dim, dim, 3, padding=1))
        self.final_conv = nn.Conv1d(dim, dim, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.initial_conv(x))
        return self.final_conv(self.residual_blocks(x) + x)
