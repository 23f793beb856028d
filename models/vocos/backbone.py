"""Vocos's three parts on streaming layers: ConvNeXt backbone and ISTFT head (features live in
the codecs). Module names follow the official checkpoint, so keys map with a prefix only."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codecstream.streaming import Residual, StreamContext, StreamingConv1d, StreamingModule, StreamingSequential
from codecstream.streaming.pointwise import AdaLayerNorm, ChannelLayerNorm, FrameLinear, LogMagnitudePhaseToSpectrum
from codecstream.streaming.spectral import StreamingISTFT

from .config import VocosConfig

__all__ = ["ConvNeXtBranch", "build_backbone", "build_head"]


class ConvNeXtBranch(StreamingModule[None]):
    """Depthwise k=7 'same' conv, then per frame: LayerNorm (or AdaLayerNorm), Linear, GELU,
    Linear, layer scale. Wrapped in :class:`Residual`, whose delay line holds the skip path
    back by the conv's 3-frame lookahead."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float, num_conditions: int | None) -> None:
        super().__init__()
        self.dwconv = StreamingConv1d(dim, dim, 7, groups=dim, padding=(3, 3))
        self.norm: nn.Module = AdaLayerNorm(num_conditions, dim, eps=1e-6) if num_conditions else nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale > 0 else None

    def _per_frame(self, x: Tensor, ctx: StreamContext) -> Tensor:
        x = x.transpose(1, 2)
        x = self.norm.normalize_last(x, ctx) if isinstance(self.norm, AdaLayerNorm) else self.norm(x)
        x = self.pwconv2(self.act(self.pwconv1(x)))
        if self.gamma is not None:
            x = self.gamma * x
        return x.transpose(1, 2)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        return self._per_frame(self.dwconv.step(x, ctx), ctx)

    def flush(self, ctx: StreamContext) -> Tensor | None:
        tail = self.dwconv.flush(ctx)
        return None if tail is None else self._per_frame(tail, ctx)

    def output_count(self, n_in: int) -> int:
        return self.dwconv.output_count(n_in)


def build_backbone(config: VocosConfig) -> StreamingSequential:
    """Features ``[B, input_channels, F]`` → hidden ``[B, dim, F]``, 27 frames of lookahead."""
    dim = config.dim
    layer_scale = config.layer_scale_init or 1 / config.num_layers
    conditions = config.adanorm_num_embeddings
    blocks = [
        Residual(ConvNeXtBranch(dim, config.intermediate_dim, layer_scale, conditions))
        for _ in range(config.num_layers)
    ]
    return StreamingSequential(
        {
            "embed": StreamingConv1d(config.input_channels, dim, 7, padding=(3, 3)),
            "norm": AdaLayerNorm(conditions, dim, eps=1e-6) if conditions else ChannelLayerNorm(dim, eps=1e-6),
            "convnext": StreamingSequential(*blocks),
            "final_layer_norm": ChannelLayerNorm(dim, eps=1e-6),
        }
    )


def build_head(config: VocosConfig) -> StreamingSequential:
    """Hidden ``[B, dim, F]`` → audio ``[B, 1, T]`` through a predicted complex STFT."""
    return StreamingSequential(
        {
            "out": FrameLinear(config.dim, config.n_fft + 2),
            "spectrum": LogMagnitudePhaseToSpectrum(),
            "istft": StreamingISTFT(config.n_fft, config.hop_length, padding=config.padding),
        }
    )
