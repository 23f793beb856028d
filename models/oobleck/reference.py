"""diffusers' ``AutoencoderOobleck`` holding our Oobleck weights, for benchmarks."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from codecstream.models.blocks.snake import hf_snake_codec_keys
from codecstream.contract import Reference
from codecstream.weights import export_state

from .codec import OobleckCodec

__all__ = ["reference_model", "reference_roundtrip"]


def reference_model(model: OobleckCodec) -> Any:
    """A ``diffusers.AutoencoderOobleck`` of ``model``'s config and weights."""
    import diffusers  # ImportError when not installed

    config = model.config
    reference = diffusers.AutoencoderOobleck(
        encoder_hidden_size=config.encoder_hidden_size,
        downsampling_ratios=list(config.downsampling_ratios), channel_multiples=list(config.channel_multiples),
        decoder_channels=config.decoder_channels, decoder_input_channels=config.decoder_input_channels,
        audio_channels=config.audio_channels, sampling_rate=config.sampling_rate,
    )
    stages = len(config.downsampling_ratios)

    def to_plugin(state: dict[str, Tensor]) -> dict[str, Tensor]:
        return hf_snake_codec_keys(state, stages, encoder="encoder.layers", decoder="decoder.layers", inner="layers")

    module = cast(nn.Module, reference)  # diffusers' models are nn.Modules its types do not show as such
    module.load_state_dict(export_state(model.state_dict(), module.state_dict(), to_plugin))
    return module.to(device=model.device, dtype=model.dtype).eval()


def reference_roundtrip(model: OobleckCodec, audio: Tensor, latents: Any, options: dict[str, Any]) -> Reference:
    reference = reference_model(model)

    def roundtrip() -> Tensor:
        with torch.no_grad():
            return reference.decode(reference.encode(audio).latent_dist.mean).sample

    def decode() -> Tensor:
        with torch.no_grad():
            return reference.decode(latents).sample

    return Reference("diffusers (AutoencoderOobleck)", roundtrip, decode)
