"""transformers' ``DacModel`` holding our DAC weights, for benchmarks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from codecstream.contract import Reference
from codecstream.weights import export_state

from .checkpoint import transformers_to_plugin
from .codec import DacCodec

__all__ = ["reference_model", "reference_roundtrip"]


def reference_model(model: DacCodec) -> Any:
    """A ``transformers.DacModel`` of ``model``'s config and weights."""
    import transformers  # ImportError when not installed

    config = model.config
    reference = transformers.DacModel(
        transformers.DacConfig(
            sampling_rate=config.sampling_rate, encoder_hidden_size=config.encoder_hidden_size,
            downsampling_ratios=list(config.downsampling_ratios), decoder_hidden_size=config.decoder_hidden_size,
            n_codebooks=config.n_codebooks, codebook_size=config.codebook_size, codebook_dim=config.codebook_dim,
        )
    )
    layout = reference.state_dict()
    reference.load_state_dict(export_state(model.state_dict(), layout, lambda s: transformers_to_plugin(s, config)))
    return reference.to(device=model.device, dtype=model.dtype).eval()  # type: ignore[call-arg]  # transformers types .to oddly


def reference_roundtrip(model: DacCodec, audio: Tensor, codes: Any, options: dict[str, Any]) -> Reference:
    reference = reference_model(model)
    n_codebooks = options.get("n_codebooks", model.config.n_codebooks)

    def roundtrip() -> Tensor:
        with torch.no_grad():
            encoded = reference.encode(audio, n_quantizers=n_codebooks)
            return reference.decode(audio_codes=encoded.audio_codes).audio_values

    def decode() -> Tensor:
        with torch.no_grad():
            return reference.decode(audio_codes=codes).audio_values

    return Reference("transformers (DacModel)", roundtrip, decode)
