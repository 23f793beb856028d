"""An offline DACVAE for parity tests, written from the description of the ``optimizerai/vocos``
fork's ``vocos/dac/vae.py`` (no installable package ships it): descript-audio-codec's residual
unit and Snake, plain convs, and the shortcuts written with einops as that file states them.
Independent of the plugin's streaming layers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from dac.model.dac import ResidualUnit
from dac.nn.layers import Snake1d
from einops import rearrange, reduce, repeat
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import remove_weight_norm
from torch.nn.utils.parametrizations import weight_norm


class EncoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(c_in, 1), ResidualUnit(c_in, 3), ResidualUnit(c_in, 9), Snake1d(c_in),
            nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )
        self.ratio, self.group = c_out // c_in, c_in * stride // c_out

    def forward(self, x):
        return self.block(x) + reduce(x, "b c (l r g) -> b (c r) l", "mean", r=self.ratio, g=self.group)


class DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(c_in), nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            ResidualUnit(c_out, 1), ResidualUnit(c_out, 3), ResidualUnit(c_out, 9),
        )
        self.ratio, self.group = c_in // c_out, c_out * stride // c_in

    def forward(self, x):
        return self.block(x) + repeat(x, "b (c r) l -> b c (l r g)", r=self.ratio, g=self.group)


class Encoder(nn.Module):
    def __init__(self, base: int, strides, latent: int) -> None:
        super().__init__()
        self.init_conv = nn.Conv1d(1, base, 7, padding=3)
        layers, width = [], base
        for stride in strides:
            layers.append(EncoderBlock(width, 2 * width, stride))
            width *= 2
        layers.append(Snake1d(width))
        self.net = nn.Sequential(*layers)
        self.last_layer = nn.Conv1d(width, latent, 3, padding=1)
        self.group = width // latent
        self.fc_mean = nn.Linear(latent, latent)
        self.fc_log_var = nn.Linear(latent, latent)

    def forward(self, x):
        x = self.net(self.init_conv(x))
        x = self.last_layer(x) + reduce(x, "b (d s) l -> b d l", "mean", s=self.group)
        x = rearrange(x, "b c l -> b l c")
        return rearrange(self.fc_mean(x), "b l c -> b c l"), rearrange(self.fc_log_var(x), "b l c -> b c l")


class Decoder(nn.Module):
    def __init__(self, latent: int, base: int, strides) -> None:
        super().__init__()
        self.init_conv = nn.Conv1d(latent, base, 7, padding=3)
        self.repeats = base // latent
        layers, width = [], base
        for stride in strides:
            layers.append(DecoderBlock(width, width // 2, stride))
            width //= 2
        layers.append(Snake1d(width))
        self.net = nn.Sequential(*layers)
        self.last_conv = nn.Conv1d(width, 1, 7, padding=3)

    def forward(self, x):
        x = self.init_conv(x) + repeat(x, "b c l -> b (c r) l", r=self.repeats)
        return self.last_conv(self.net(x))


class DACVAE(nn.Module):
    def __init__(self, encoder_dim=64, encoder_rates=(2, 4, 8, 8), latent_dim=None, decoder_dim=1536, decoder_rates=(8, 8, 4, 2), sample_rate=48000):
        super().__init__()
        latent = latent_dim if latent_dim is not None else encoder_dim * 2 ** len(encoder_rates)
        self.hop_length = math.prod(encoder_rates)
        self.encoder = Encoder(encoder_dim, encoder_rates, latent)
        self.decoder = Decoder(latent, decoder_dim, decoder_rates)


class SeedWrapper:
    """The seed's ``get_voco("dacvae")``: ``[B, T, C]`` audio, each channel a mono pass, padded
    with zeros to a whole hop; latents ``[B, L, C·D]``, channel-major."""

    def __init__(self, model: DACVAE, channels: int = 2) -> None:
        self.model, self.channels = model, channels

    @torch.no_grad()
    def encode(self, audio):
        x = rearrange(audio, "b t c -> (b c) 1 t")
        x = nn.functional.pad(x, (0, -x.shape[-1] % self.model.hop_length))
        mean, _ = self.model.encoder(x)
        return rearrange(mean, "(b c) d l -> b l (c d)", c=self.channels)

    @torch.no_grad()
    def decode(self, latents):
        z = rearrange(latents, "b l (c d) -> (b c) d l", c=self.channels)
        return rearrange(self.model.decoder(z), "(b c) 1 t -> b t c", c=self.channels)


def build(config: dict, seed: int = 0) -> DACVAE:
    """A reference with random weights (Snake α drawn away from 1), every conv weight-normed in
    the new parametrization style, as the published safetensors store them."""
    torch.manual_seed(seed)
    model = DACVAE(**config).eval()
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            if hasattr(module, "weight_g"):  # descript's units use the old-style weight norm
                remove_weight_norm(module)
            weight_norm(module)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.uniform_(0.5, 1.5)
            elif name.endswith("original0"):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
    return model


def save(model: DACVAE, config: dict, directory: Path, name: str = "dac-vae-small") -> None:
    """``{name}.json`` + ``{name}.safetensors``, as the seed's loader reads them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / f"{name}.safetensors")
