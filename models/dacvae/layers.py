"""DACVAE's networks on streaming layers: DAC residual units and Snake, plus the shortcuts that
move between time and channels around each stride (frame-local, so they stream as they are).

The module trees carry the fork's parameter names (``encoder.init_conv``, ``encoder.net.N``,
``encoder.last_layer``, ``encoder.fc_mean`` ...); each builds its streaming chain over those
same modules and keeps it out of the tree."""

from __future__ import annotations

import math

from torch import Tensor, nn

from codecstream.streaming import (
    FramedModule,
    Residual,
    StreamContext,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingModule,
    StreamingSequential,
)
from codecstream.streaming.pointwise import FrameLinear, Snake1d

from ..blocks.snake import residual_unit, same_conv
from .config import DacVaeConfig

__all__ = ["SpaceToChannelMean", "ChannelToSpaceRepeat", "ChannelRepeat", "ChannelGroupMean", "DacVaeEncoder", "DacVaeDecoder"]


class SpaceToChannelMean(FramedModule):
    """Each run of ``stride`` samples → ``ratio`` channels per input channel, each the mean of
    ``stride / ratio`` consecutive samples (einops ``b c (l r g) -> b (c r) l``, mean over g).
    ``[B, C, T]`` → ``[B, C·ratio, ⌊T / stride⌋]``."""

    def __init__(self, channels: int, ratio: int, stride: int) -> None:
        super().__init__(window=stride, stride=stride, padding=(0, 0), pad_mode="zeros", pad_to_stride=False, out_channels=channels * ratio)
        self.ratio = ratio
        self.group = stride // ratio

    def _compute(self, windows: Tensor, n_out: int) -> Tensor:
        batch, channels, _ = windows.shape
        means = windows.reshape(batch, channels, n_out, self.ratio, self.group).mean(-1)
        return means.transpose(2, 3).reshape(batch, channels * self.ratio, n_out)


class ChannelToSpaceRepeat(StreamingModule[None]):
    """The decoder's shortcut, the reverse move: each frame's ``ratio`` channel groups laid out
    in time, each value repeated ``stride / ratio`` times (einops ``b (c r) l -> b c (l r g)``).
    ``[B, C·ratio, L]`` → ``[B, C, L·stride]``; one frame in gives ``stride`` samples out."""

    def __init__(self, ratio: int, stride: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.stride = stride

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        batch, channels, frames = x.shape
        out = x.reshape(batch, channels // self.ratio, self.ratio, frames).transpose(2, 3)
        out = out.unsqueeze(-1).expand(-1, -1, -1, -1, self.stride // self.ratio)
        return out.reshape(batch, channels // self.ratio, frames * self.stride)

    def output_count(self, n_in: int) -> int:
        return n_in * self.stride


class ChannelRepeat(nn.Module):
    """Each channel ``ratio`` times in a row (einops ``b c l -> b (c r) l``)."""

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.ratio = ratio

    def forward(self, x: Tensor) -> Tensor:
        return x.repeat_interleave(self.ratio, dim=1)


class ChannelGroupMean(nn.Module):
    """The mean of each run of ``group`` channels (einops ``b (d s) l -> b d l``, mean over s)."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1] // self.group, self.group, x.shape[2]).mean(2)


def _units(dim: int) -> list[nn.Module]:
    return [residual_unit(dim, dilation, Snake1d) for dilation in (1, 3, 9)]


def encoder_block(c_in: int, c_out: int, stride: int) -> Residual:
    """Three residual units, Snake and a stride-``stride`` conv (kernel ``2·stride``), plus the
    space-to-channel mean of the input; names ``block.0..4``."""
    pad = math.ceil(stride / 2)
    block = StreamingSequential(*_units(c_in), Snake1d(c_in), StreamingConv1d(c_in, c_out, 2 * stride, stride=stride, padding=(pad, pad)))
    return Residual(block, SpaceToChannelMean(c_in, c_out // c_in, stride))


def decoder_block(c_in: int, c_out: int, stride: int) -> Residual:
    """Snake, a stride-``stride`` transposed conv (kernel ``2·stride``) and three residual units,
    plus the channel-to-space repeat of the input; names ``block.0..4``."""
    pad = math.ceil(stride / 2)
    block = StreamingSequential(
        Snake1d(c_in), StreamingConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, trim=(pad, pad)), *_units(c_out)
    )
    return Residual(block, ChannelToSpaceRepeat(c_in // c_out, stride))


class DacVaeEncoder(nn.Module):
    """Mono audio ``[B, 1, T]`` → posterior mean ``[B, latent, T / hop]``. ``fc_log_var`` is
    loaded but not run: the seed's ``get_voco`` keeps the mean."""

    def __init__(self, config: DacVaeConfig) -> None:
        super().__init__()
        width = config.encoder_dim
        self.init_conv = same_conv(1, width, 7)
        blocks: list[nn.Module] = []
        for stride in config.encoder_rates:
            blocks.append(encoder_block(width, 2 * width, stride))
            width *= 2
        self.net = StreamingSequential(*blocks, Snake1d(width))
        self.last_layer = same_conv(width, config.latent_size, 3)
        self.fc_mean = FrameLinear(config.latent_size, config.latent_size)
        self.fc_log_var = FrameLinear(config.latent_size, config.latent_size)
        head = Residual(self.last_layer, ChannelGroupMean(width // config.latent_size))
        object.__setattr__(self, "stream_path", StreamingSequential(self.init_conv, self.net, head, self.fc_mean))

    stream_path: StreamingSequential


class DacVaeDecoder(nn.Module):
    """Latents ``[B, latent, L]`` → mono audio ``[B, 1, L · hop]`` (no final tanh, as the fork)."""

    def __init__(self, config: DacVaeConfig) -> None:
        super().__init__()
        width = config.decoder_dim
        self.init_conv = same_conv(config.latent_size, width, 7)
        blocks: list[nn.Module] = []
        for stride in config.decoder_rates:
            blocks.append(decoder_block(width, width // 2, stride))
            width //= 2
        self.net = StreamingSequential(*blocks, Snake1d(width))
        self.last_conv = same_conv(width, 1, 7)
        head = Residual(self.init_conv, ChannelRepeat(config.decoder_dim // config.latent_size))
        object.__setattr__(self, "stream_path", StreamingSequential(head, self.net, self.last_conv))

    stream_path: StreamingSequential
