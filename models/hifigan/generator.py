"""jik876's HiFi-GAN generator (ResBlock1 variant) on streaming layers.

``conv_pre`` (k7) → for each stage: LeakyReLU(0.1) → transposed conv → the mean of three
residual stacks with kernels 3/7/11 (multi-receptive-field fusion) → LeakyReLU(0.01) →
``conv_post`` (k7) → tanh. Every conv is 'same' zero-padded, so it streams exactly with a delay.
"""

from __future__ import annotations

from torch import nn

from codecstream.streaming import Residual, StreamingConv1d, StreamingConvTranspose1d, StreamingSequential
from codecstream.streaming.containers import AlignedSum

from .config import HifiganConfig

__all__ = ["build_generator"]

LRELU_SLOPE = 0.1


def _same(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> StreamingConv1d:
    pad = (kernel * dilation - dilation) // 2
    return StreamingConv1d(c_in, c_out, kernel, dilation=dilation, padding=(pad, pad))


def _resblock1(channels: int, kernel: int, dilations: tuple[int, ...]) -> StreamingSequential:
    """x ← x + conv2(lrelu(conv1_d(lrelu(x)))) for each dilation d."""
    return StreamingSequential(
        *[
            Residual(
                StreamingSequential(
                    nn.LeakyReLU(LRELU_SLOPE), _same(channels, channels, kernel, d), nn.LeakyReLU(LRELU_SLOPE), _same(channels, channels, kernel)
                )
            )
            for d in dilations
        ]
    )


def build_generator(config: HifiganConfig) -> StreamingSequential:
    """Mel ``[B, num_mels, F]`` → audio ``[B, 1, F · hop]``.

    Children: ``conv_pre``, ``stages.{i}.{0: lrelu, 1: up, 2: mrf.{j}}``, ``post`` (lrelu,
    ``conv_post``, tanh); the checkpoint reader maps jik876's ``ups.i`` / ``resblocks.k`` names.
    """
    channels = config.upsample_initial_channel
    stages = []
    for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
        c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
        pad = (kernel - rate) // 2
        up = StreamingConvTranspose1d(c_in, c_out, kernel, stride=rate, trim=(pad, pad))
        mrf = AlignedSum(
            *[_resblock1(c_out, k, d) for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)],
            divisor=len(config.resblock_kernel_sizes),
        )
        stages.append(StreamingSequential({"act": nn.LeakyReLU(LRELU_SLOPE), "up": up, "mrf": mrf}))
    final = channels // 2 ** len(config.upsample_rates)
    return StreamingSequential(
        {
            "conv_pre": _same(config.num_mels, channels, 7),
            "stages": StreamingSequential(*stages),
            "post": StreamingSequential({"act": nn.LeakyReLU(0.01), "conv_post": _same(final, 1, 7), "tanh": nn.Tanh()}),
        }
    )
