"""SEANet encoder and decoder (EnCodec) on the engine's streaming layers.

Layer indices equal the official ``encoder.model.N`` / transformers ``encoder.layers.N``
indices, so checkpoint keys map by renaming alone.
"""

from __future__ import annotations

from torch import nn

from codecstream.streaming import (
    Residual,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingLSTM,
    StreamingSequential,
)

from .config import EncodecConfig

__all__ = ["build_encoder", "build_decoder"]


def _conv(config: EncodecConfig, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> StreamingConv1d:
    """EnCodec's ``SConv1d``: pad ``k_eff - stride`` (all left when causal, else split with the
    extra frame on the left), plus enough on the right to complete the last stride."""
    total = (kernel - 1) * dilation + 1 - stride
    right = 0 if config.causal else total // 2
    return StreamingConv1d(
        c_in,
        c_out,
        kernel,
        stride=stride,
        dilation=dilation,
        padding=(total - right, right),
        pad_mode="zeros" if config.pad_mode in ("constant", "zero", "zeros") else config.pad_mode,  # type: ignore[arg-type]
        pad_to_stride=True,
    )


def _conv_transpose(config: EncodecConfig, c_in: int, c_out: int, kernel: int, stride: int) -> StreamingConvTranspose1d:
    """EnCodec's ``SConvTranspose1d``: crop ``k - stride`` samples, all at the end when causal."""
    total = kernel - stride
    end = total if config.causal else total // 2
    return StreamingConvTranspose1d(c_in, c_out, kernel, stride=stride, trim=(total - end, end))


def _resblock(config: EncodecConfig, dim: int, dilation: int) -> Residual:
    hidden = dim // config.compress
    block = StreamingSequential(
        nn.ELU(),
        _conv(config, dim, hidden, config.residual_kernel_size, dilation=dilation),
        nn.ELU(),
        _conv(config, hidden, dim, 1),
    )
    shortcut = None if config.true_skip else _conv(config, dim, dim, 1)
    return Residual(block, shortcut)


def build_encoder(config: EncodecConfig) -> StreamingSequential:
    """Audio ``[B, channels, T]`` → latents ``[B, dimension, ceil(T / hop)]``."""
    mult = 1
    layers: list[nn.Module] = [_conv(config, config.channels, config.n_filters, config.kernel_size)]
    for ratio in reversed(config.ratios):
        width = mult * config.n_filters
        for j in range(config.n_residual_layers):
            layers.append(_resblock(config, width, config.dilation_base**j))
        layers += [nn.ELU(), _conv(config, width, width * 2, ratio * 2, stride=ratio)]
        mult *= 2
    if config.lstm_layers:
        layers.append(StreamingLSTM(mult * config.n_filters, config.lstm_layers))
    layers += [nn.ELU(), _conv(config, mult * config.n_filters, config.dimension, config.last_kernel_size)]
    return StreamingSequential(*layers)


def build_decoder(config: EncodecConfig) -> StreamingSequential:
    """Latents ``[B, dimension, F]`` → audio ``[B, channels, F · hop]``."""
    mult = 2 ** len(config.ratios)
    layers: list[nn.Module] = [_conv(config, config.dimension, mult * config.n_filters, config.kernel_size)]
    if config.lstm_layers:
        layers.append(StreamingLSTM(mult * config.n_filters, config.lstm_layers))
    for ratio in config.ratios:
        width = mult * config.n_filters
        layers += [nn.ELU(), _conv_transpose(config, width, width // 2, ratio * 2, ratio)]
        for j in range(config.n_residual_layers):
            layers.append(_resblock(config, width // 2, config.dilation_base**j))
        mult //= 2
    layers += [nn.ELU(), _conv(config, config.n_filters, config.channels, config.last_kernel_size)]
    return StreamingSequential(*layers)
