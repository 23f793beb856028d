"""Oobleck hyper-parameters (diffusers' ``AutoencoderOobleck`` names). stable-audio-tools'
``model_config.json`` carries the same facts under ``pretransform.config.{encoder,decoder}``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["OobleckConfig", "OOBLECK_SAO"]


@dataclass(frozen=True)
class OobleckConfig:
    sampling_rate: int = 44_100
    audio_channels: int = 2
    encoder_hidden_size: int = 128  # channels of the first stage ("channels" in stable-audio-tools)
    channel_multiples: tuple[int, ...] = (1, 2, 4, 8, 16)
    downsampling_ratios: tuple[int, ...] = (2, 4, 4, 8, 8)
    decoder_channels: int = 128
    decoder_input_channels: int = 64  # the latent: the encoder emits mean ‖ scale, twice this
    final_tanh: bool = False

    @property
    def latent_dim(self) -> int:
        return self.decoder_input_channels

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsampling_ratios)

    @property
    def encoder_widths(self) -> list[int]:
        return [self.encoder_hidden_size * m for m in (1, *self.channel_multiples)]

    @property
    def decoder_widths(self) -> list[int]:
        return [self.decoder_channels * m for m in reversed((1, *self.channel_multiples))]

    @classmethod
    def from_diffusers(cls, data: Mapping[str, Any]) -> "OobleckConfig":
        """``vae/config.json`` of a diffusers pipeline (``_class_name: AutoencoderOobleck``)."""
        name = data.get("_class_name", "AutoencoderOobleck")
        if name != "AutoencoderOobleck":
            raise CheckpointMismatchError(f"config.json describes a {name!r}, not AutoencoderOobleck")
        try:
            return cls(
                sampling_rate=int(data.get("sampling_rate", 44100)),
                audio_channels=int(data.get("audio_channels", 2)),
                encoder_hidden_size=int(data.get("encoder_hidden_size", 128)),
                channel_multiples=tuple(int(m) for m in data.get("channel_multiples", (1, 2, 4, 8, 16))),
                downsampling_ratios=tuple(int(r) for r in data.get("downsampling_ratios", (2, 4, 4, 8, 8))),
                decoder_channels=int(data.get("decoder_channels", 128)),
                decoder_input_channels=int(data.get("decoder_input_channels", 64)),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointMismatchError(f"config.json is not an Oobleck config: {exc}") from exc

    @classmethod
    def from_stable_audio_tools(cls, data: Mapping[str, Any]) -> "OobleckConfig":
        """A stable-audio-tools ``model_config.json``: an autoencoder, or a model whose
        pretransform is one (Stable Audio Open)."""
        model = data.get("model", {})
        autoencoder = model.get("pretransform", {}).get("config", model) if isinstance(model, Mapping) else {}
        try:
            encoder, decoder = autoencoder["encoder"], autoencoder["decoder"]
            if encoder.get("type") != "oobleck" or decoder.get("type") != "oobleck":
                raise CheckpointMismatchError(
                    f"the autoencoder is {encoder.get('type')!r}/{decoder.get('type')!r}, not oobleck/oobleck"
                )
            if not encoder["config"].get("use_snake", False) or encoder["config"].get("antialias_activation", False):
                raise CheckpointMismatchError("only Oobleck with Snake activations and no anti-aliasing is supported")
            if decoder["config"].get("use_nearest_upsample", False):
                raise CheckpointMismatchError("Oobleck decoders with nearest-neighbour upsampling are not supported")
            enc, dec = encoder["config"], decoder["config"]
            return cls(
                sampling_rate=int(data.get("sample_rate", 44100)),
                audio_channels=int(enc.get("in_channels", 2)),
                encoder_hidden_size=int(enc.get("channels", 128)),
                channel_multiples=tuple(int(m) for m in enc.get("c_mults", (1, 2, 4, 8))),
                downsampling_ratios=tuple(int(s) for s in enc.get("strides", (2, 4, 8, 8))),
                decoder_channels=int(dec.get("channels", 128)),
                decoder_input_channels=int(dec.get("latent_dim", 32)),
                final_tanh=bool(dec.get("final_tanh", True)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointMismatchError(f"model_config.json has no Oobleck autoencoder: {exc}") from exc


#: Stable Audio Open 1.0's VAE (``stable_audio_2_0_vae.json``): 44.1 kHz stereo, hop 2048, 64-dim.
OOBLECK_SAO = OobleckConfig()
