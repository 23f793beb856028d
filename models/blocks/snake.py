"""The DAC-style convolutional encoder and decoder (DAC, Stable Audio's Oobleck), on streaming
layers. Every conv is zero-padded and centred, so the stacks stream exactly; the builders take
the activation and the container names so each model keeps its published module names."""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

from torch import Tensor, nn

from codecstream.streaming import Residual, StreamingConv1d, StreamingConvTranspose1d, StreamingSequential

__all__ = ["same_conv", "residual_unit", "build_snake_encoder", "build_snake_decoder", "hf_snake_codec_keys"]

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


_UNIT = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}


def hf_snake_codec_keys(
    state: dict[str, Tensor], stages: int, *, encoder: str, decoder: str, inner: str
) -> dict[str, Tensor]:
    """Rename the Hugging Face layout of a DAC-style encoder/decoder (transformers' ``DacModel``,
    diffusers' ``AutoencoderOobleck``: ``encoder.conv1``, ``block.{i}.res_unit{j}.conv1``, ...)
    to the indexed layout of :mod:`.layers` (``{encoder}.N.{inner}.M...``); other keys pass."""
    rules = [
        (r"encoder\.conv1\.(.+)", lambda m: f"{encoder}.0.{m[1]}"),
        (r"encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
         lambda m: f"{encoder}.{int(m[1]) + 1}.{inner}.{int(m[2]) - 1}.block.{_UNIT[m[3]]}.{m[4]}"),
        (r"encoder\.block\.(\d+)\.(snake1|conv1)\.(.+)",
         lambda m: f"{encoder}.{int(m[1]) + 1}.{inner}.{3 if m[2] == 'snake1' else 4}.{m[3]}"),
        (r"encoder\.snake1\.(.+)", lambda m: f"{encoder}.{stages + 1}.{m[1]}"),
        (r"encoder\.conv2\.(.+)", lambda m: f"{encoder}.{stages + 2}.{m[1]}"),
        (r"decoder\.conv1\.(.+)", lambda m: f"{decoder}.0.{m[1]}"),
        (r"decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
         lambda m: f"{decoder}.{int(m[1]) + 1}.{inner}.{int(m[2]) + 1}.block.{_UNIT[m[3]]}.{m[4]}"),
        (r"decoder\.block\.(\d+)\.(snake1|conv_t1)\.(.+)",
         lambda m: f"{decoder}.{int(m[1]) + 1}.{inner}.{0 if m[2] == 'snake1' else 1}.{m[3]}"),
        (r"decoder\.snake1\.(.+)", lambda m: f"{decoder}.{stages + 1}.{m[1]}"),
        (r"decoder\.conv2\.(.+)", lambda m: f"{decoder}.{stages + 2}.{m[1]}"),
    ]
    compiled = [(re.compile(pattern), rename) for pattern, rename in rules]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, rename in compiled:
            if m := pattern.fullmatch(key):
                key = rename(m)
                break
        out[key] = value
    return out
