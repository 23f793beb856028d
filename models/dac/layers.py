"""The DAC-style convolutional encoder and decoder (DAC, Stable Audio's Oobleck), on streaming
layers. Every conv is zero-padded and centred, so the stacks stream exactly; the builders take
the activation and the container names so each model keeps its published module names."""

from __future__ import annotations

import math
from typing import Callable, Sequence

from torch import nn

from codecstream.streaming import Residual, StreamingConv1d, StreamingConvTranspose1d, StreamingSequential

__all__ = ["same_conv", "residual_unit", "build_snake_encoder", "build_snake_decoder"]

Activation = Callable[[int], nn.Module]


def same_conv(c_in: int, c_out: int, kernel: int, *, dilation: int = 1, bias: bool = True) -> StreamingConv1d:
    pad = (kernel - 1) * dilation // 2
    return StreamingConv1d(c_in, c_out, kernel, dilation=dilation, bias=bias, padding=(pad, pad))


def residual_unit(dim: int, dilation: int, activation: Activation) -> Residual:
    """act → k7 dilated conv → act → 1x1 conv, plus the input (the branch's ``block.0..3``)."""
    return Residual(
        StreamingSequential(activation(dim), same_conv(dim, dim, 7, dilation=dilation), activation(dim), same_conv(dim, dim, 1))
    )


def _units(dim: int, activation: Activation) -> list[nn.Module]:
    return [residual_unit(dim, dilation, activation) for dilation in (1, 3, 9)]


def build_snake_encoder(
    *,
    audio_channels: int,
    widths: Sequence[int],
    strides: Sequence[int],
    out_channels: int,
    activation: Activation,
    outer: str,
    inner: str,
) -> StreamingSequential:
    """Audio ``[B, audio_channels, T]`` → ``[B, out_channels, ⌊T / prod(strides)⌋]``.

    ``widths[i]`` channels enter stage ``i`` (stride ``strides[i]``), ``widths[i + 1]`` leave
    it. Layer ``N`` is named ``{outer}.N``; inside a stage, ``{inner}.0..4``.
    """
    layers: list[nn.Module] = [same_conv(audio_channels, widths[0], 7)]
    for stage, stride in enumerate(strides):
        c_in, c_out, pad = widths[stage], widths[stage + 1], math.ceil(stride / 2)
        block = StreamingSequential(
            *_units(c_in, activation), activation(c_in),
            StreamingConv1d(c_in, c_out, 2 * stride, stride=stride, padding=(pad, pad)),
        )
        layers.append(StreamingSequential({inner: block}))
    layers += [activation(widths[-1]), same_conv(widths[-1], out_channels, 3)]
    return StreamingSequential({outer: StreamingSequential(*layers)})


def build_snake_decoder(
    *,
    latent_channels: int,
    widths: Sequence[int],
    strides: Sequence[int],
    audio_channels: int,
    activation: Activation,
    outer: str,
    inner: str,
    output_bias: bool = True,
    final_tanh: bool = True,
) -> StreamingSequential:
    """Latents ``[B, latent_channels, F]`` → audio ``[B, audio_channels, F · prod(strides)]``
    (``5F − 1`` per stride-5 stage: a k=10, p=3 transposed conv, as the references).

    Stage ``i`` (stride ``strides[i]``) takes ``widths[i]`` channels to ``widths[i + 1]``.
    """
    layers: list[nn.Module] = [same_conv(latent_channels, widths[0], 7)]
    for stage, stride in enumerate(strides):
        c_in, c_out, pad = widths[stage], widths[stage + 1], math.ceil(stride / 2)
        block = StreamingSequential(
            activation(c_in), StreamingConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, trim=(pad, pad)),
            *_units(c_out, activation),
        )
        layers.append(StreamingSequential({inner: block}))
    layers += [activation(widths[-1]), same_conv(widths[-1], audio_channels, 7, bias=output_bias)]
    if final_tanh:
        layers.append(nn.Tanh())
    return StreamingSequential({outer: StreamingSequential(*layers)})
