"""SEANet encoder and decoder (EnCodec) on the engine's streaming layers.

Layer indices equal the official ``encoder.model.N`` / transformers ``encoder.layers.N``
indices, so checkpoint keys map by renaming alone.

With ``norm="time_group_norm"`` (the 48 kHz model) every conv is followed by a GroupNorm over
the whole signal, which no chunked computation can reproduce: those networks are built from
plain containers whose every layer sees the whole segment at once (see :class:`SegmentConv`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from codecstream.streaming import (
    Residual,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingLSTM,
    StreamingSequential,
)
from codecstream.weights import rename_keys

__all__ = ["SeanetConfig", "build_encoder", "build_decoder", "seanet_keys", "SegmentConv", "SegmentResidual"]


@dataclass(frozen=True)
class SeanetConfig:
    """The SEANet hyper-parameters (names as ``encodec.SEANetEncoder``; defaults: EnCodec 24 kHz).
    :class:`~codecstream.models.encodec.SeanetConfig` extends it with the quantizer's."""

    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder order; the encoder uses them reversed
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = True
    pad_mode: str = "reflect"
    true_skip: bool = False  # False: 1x1 conv shortcut in residual blocks
    compress: int = 2
    lstm_layers: int = 2
    norm: str = "weight_norm"  # or "time_group_norm": GroupNorm(1, C) after every conv (48 kHz)


class SegmentConv(nn.Module):
    """A conv (or transposed conv) then ``GroupNorm(1, C)`` over the whole input, then the
    transposed conv's trim (EnCodec normalises before trimming). Whole signals only:
    ``conv(x)`` without a context is the offline conv."""

    def __init__(self, conv: nn.Module, channels: int, trim: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.GroupNorm(1, channels)
        self.trim = trim

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.conv(x))
        return y[..., self.trim[0] : y.shape[-1] - self.trim[1]]


class SegmentResidual(nn.Module):
    """``shortcut(x) + block(x)`` over whole signals (every conv in it is centred: no delay)."""

    def __init__(self, block: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


def _segmented(config: SeanetConfig) -> bool:
    return config.norm == "time_group_norm"


def _sequential(config: SeanetConfig, *layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers) if _segmented(config) else StreamingSequential(*layers)


def _conv(config: SeanetConfig, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Module:
    """EnCodec's ``SConv1d``: pad ``k_eff - stride`` (all left when causal, else split with the
    extra frame on the left), plus enough on the right to complete the last stride."""
    total = (kernel - 1) * dilation + 1 - stride
    right = 0 if config.causal else total // 2
    conv = StreamingConv1d(
        c_in,
        c_out,
        kernel,
        stride=stride,
        dilation=dilation,
        padding=(total - right, right),
        pad_mode="zeros" if config.pad_mode in ("constant", "zero", "zeros") else config.pad_mode,  # type: ignore[arg-type]
        pad_to_stride=True,
    )
    return SegmentConv(conv, c_out) if _segmented(config) else conv


def _conv_transpose(config: SeanetConfig, c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
    """EnCodec's ``SConvTranspose1d``: crop ``k - stride`` samples, all at the end when causal."""
    total = kernel - stride
    end = total if config.causal else total // 2
    if _segmented(config):
        return SegmentConv(StreamingConvTranspose1d(c_in, c_out, kernel, stride=stride), c_out, trim=(total - end, end))
    return StreamingConvTranspose1d(c_in, c_out, kernel, stride=stride, trim=(total - end, end))


def _resblock(config: SeanetConfig, dim: int, dilation: int) -> nn.Module:
    hidden = dim // config.compress
    block = _sequential(
        config,
        nn.ELU(),
        _conv(config, dim, hidden, config.residual_kernel_size, dilation=dilation),
        nn.ELU(),
        _conv(config, hidden, dim, 1),
    )
    shortcut = None if config.true_skip else _conv(config, dim, dim, 1)
    return SegmentResidual(block, shortcut) if _segmented(config) else Residual(block, shortcut)


def build_encoder(config: SeanetConfig) -> nn.Module:
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
    return _sequential(config, *layers)


def build_decoder(config: SeanetConfig) -> nn.Module:
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
    return _sequential(config, *layers)


# Official (``encoder.model.N.conv.conv``) and transformers (``encoder.layers.N.conv``) names → ours.
_OFFICIAL_RULES = [
    (r"^(encoder|decoder)\.model\.", r"\1."),
    (r"\.conv\.conv\.", "."),
    (r"\.convtr\.convtr\.", "."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1."),
]
_TRANSFORMERS_RULES = [
    (r"^(encoder|decoder)\.layers\.", r"\1."),
    (r"\.conv\.", "."),
    (r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.layers.\1."),
]
# Time-group-norm models (48 kHz): a conv and its norm are siblings, ``X.conv`` and ``X.norm``.
_OFFICIAL_NORM_RULES = [
    (r"^(encoder|decoder)\.model\.", r"\1."),
    (r"\.(conv|convtr)\.(conv|convtr)\.", ".conv."),
    (r"\.(conv|convtr)\.norm\.", ".norm."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1."),
]
_TRANSFORMERS_NORM_RULES = [
    (r"^(encoder|decoder)\.layers\.", r"\1."),
    (r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.layers.\1."),
]


def seanet_keys(state: dict[str, Tensor], *, time_group_norm: bool = False) -> dict[str, Tensor]:
    """Rename an official or transformers SEANet (EnCodec) state dict to this plugin's keys (a state
    dict already in plugin keys passes unchanged)."""
    if any(k.startswith(("encoder.model.", "decoder.model.")) for k in state):
        return rename_keys(state, _OFFICIAL_NORM_RULES if time_group_norm else _OFFICIAL_RULES)
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in state):
        return rename_keys(state, _TRANSFORMERS_NORM_RULES if time_group_norm else _TRANSFORMERS_RULES)
    return dict(state)
