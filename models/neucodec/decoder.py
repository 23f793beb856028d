"""NeuCodec's decoder (neucodec's ``generator``): FSQ code → 2048-d latent, then a Vocos-style
backbone (k7 conv, two GroupNorm ResNet blocks, 12 full-attention transformer blocks, two more
ResNet blocks, LayerNorm) and an ISTFT head (n_fft 1920, hop 480, "same" padding) at 24 kHz.

No part of it is causal and GroupNorm pools statistics over all frames, so it decodes whole
windows: exact offline, approximate (and measured) in windowed streaming.

The reference applies a rotary embedding to a tensor whose axes it misreads (heads as time),
which rotates every time step of a head's queries and keys by the same angle: the attention
scores do not change, so this decoder computes attention without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecstream.streaming.pointwise import LogMagnitudePhaseToSpectrum
from codecstream.streaming.spectral import StreamingISTFT

from .config import NeuCodecConfig

__all__ = ["FSQ", "Generator"]


class FSQ(nn.Module):
    """Finite scalar quantisation: ``project_in`` to one value per level, bounded by tanh (twice,
    as the published model was trained), rounded; the code is those digits in base ``levels``,
    the first least significant. ``project_out`` maps digits back."""

    levels: Tensor
    basis: Tensor

    def __init__(self, dim: int, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, len(levels))
        self.project_out = nn.Linear(len(levels), dim)
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        basis = torch.cumprod(torch.tensor((1, *levels[:-1]), dtype=torch.long), dim=0)
        self.register_buffer("basis", basis, persistent=False)

    def _bound(self, x: Tensor) -> Tensor:
        levels = self.levels.to(x.dtype)
        half_range = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(x.dtype)
        shift = torch.atanh(offset / half_range)
        return torch.tanh(x + shift) * half_range - offset

    def encode(self, latents: Tensor) -> Tensor:
        """``[B, T, dim]`` → ``[B, T]`` int64 codes (computed in float32 at least, as the reference)."""
        x = self.project_in(latents)
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        digits = torch.round(self._bound(self._bound(x))) + (self.levels // 2).to(x.dtype)
        return (digits.long() * self.basis).sum(dim=-1)

    def decode(self, codes: Tensor) -> Tensor:
        """``[B, T]`` codes → ``[B, T, dim]``."""
        digits = (codes[..., None] // self.basis) % self.levels
        half = self.levels // 2
        values = (digits - half).to(self.project_out.weight.dtype) / half.to(self.project_out.weight.dtype)
        return self.project_out(values)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim, bias=False)
        self.c_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, dim = x.shape
        q, k, v = self.c_attn(x).view(batch, frames, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(out.transpose(1, 2).reshape(batch, frames, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.att_norm = RMSNorm(dim)
        self.att = Attention(dim, heads)
        self.ffn_norm = RMSNorm(dim)
        self.mlp = MLP(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.att(self.att_norm(x))
        return x + self.mlp(self.ffn_norm(x))


class ResnetBlock(nn.Module):
    """``x + conv2(swish(norm2(conv1(swish(norm1(x))))))`` on ``[B, C, T]``; GroupNorm over all T."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim, eps=1e-6)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, dim, eps=1e-6)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Backbone(nn.Module):
    def __init__(self, config: NeuCodecConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.embed = nn.Conv1d(dim, dim, 7, padding=3)
        self.prior_net = nn.Sequential(ResnetBlock(dim, config.groups), ResnetBlock(dim, config.groups))
        self.transformers = nn.Sequential(
            *(TransformerBlock(dim, config.num_heads, config.intermediate_size) for _ in range(config.num_layers))
        )
        self.post_net = nn.Sequential(ResnetBlock(dim, config.groups), ResnetBlock(dim, config.groups))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, dim]`` → ``[B, T, dim]``."""
        x = self.prior_net(self.embed(x.transpose(1, 2)))
        x = self.transformers(x.transpose(1, 2))
        x = self.post_net(x.transpose(1, 2))
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFTHead(nn.Module):
    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.to_spectrum = LogMagnitudePhaseToSpectrum()
        self.istft = StreamingISTFT(n_fft, hop_length, padding="same")

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, dim]`` → ``[B, 1, T · hop]``."""
        return self.istft(self.to_spectrum(self.out(x).transpose(1, 2)))  # offline: one step and a flush


class Generator(nn.Module):
    """neucodec's ``generator``: the quantizer, the backbone and the head."""

    def __init__(self, config: NeuCodecConfig) -> None:
        super().__init__()
        self.quantizer = FSQ(config.quantization_dim, config.quantization_levels)
        self.backbone = Backbone(config)
        self.head = ISTFTHead(config.hidden_size, config.n_fft, config.hop_length)

    def forward(self, latents: Tensor) -> Tensor:
        """``[B, T, hidden]`` (after ``fc_post_a``) → audio ``[B, 1, T · hop]``."""
        return self.head(self.backbone(latents))
