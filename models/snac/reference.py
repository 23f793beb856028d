"""The ``snac`` package (hubertsiuzdak/snac) holding our weights, for parity tests and benchmarks."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor

from codecstream.contract import Reference

from .codec import SnacCodec
from .config import SnacConfig
from .layers import PositionalNoise

__all__ = ["build_reference", "positional_noise_in", "quiet_reference_decoder", "reference_roundtrip"]


def build_reference(config: SnacConfig, state: dict[str, Tensor] | None = None) -> Any:
    """A ``snac.SNAC`` of ``config`` with ``state`` (our plugin's state dict: same key names;
    weight norm re-expressed as ``g = ‖w‖``, ``v = w``)."""
    from snac import SNAC

    model = SNAC(
        sampling_rate=config.sampling_rate, encoder_dim=config.encoder_dim, encoder_rates=list(config.encoder_rates),
        latent_dim=config.latent_dim, decoder_dim=config.decoder_dim, decoder_rates=list(config.decoder_rates),
        attn_window_size=config.attn_window_size, codebook_size=config.codebook_size,
        codebook_dim=config.codebook_dim, vq_strides=list(config.vq_strides), noise=config.noise,
        depthwise=config.depthwise,
    ).eval()
    if state is not None:
        expected = model.state_dict()
        converted = {}
        for key, value in state.items():
            if key in expected:
                converted[key] = value
            elif key.endswith(".weight") and key[: -len("weight")] + "parametrizations.weight.original0" in expected:
                prefix = key[: -len("weight")] + "parametrizations.weight."
                converted[prefix + "original0"] = value.flatten(1).norm(dim=1).view(-1, *([1] * (value.dim() - 1)))
                converted[prefix + "original1"] = value
            else:
                raise RuntimeError(f"no place for {key} in the snac reference")
        model.load_state_dict(converted)
    return model


@contextlib.contextmanager
def positional_noise_in(reference: Any, seed: int) -> Iterator[None]:
    """Make the reference's noise blocks draw our positional noise (offline: from sample 0)."""
    from snac.layers import NoiseBlock

    blocks = [m for m in reference.modules() if isinstance(m, NoiseBlock)]
    source = PositionalNoise(seed)
    originals = []
    for layer, block in enumerate(blocks):
        originals.append(block.forward)

        def forward(x: Tensor, block: Any = block, layer: int = layer) -> Tensor:
            noise = source.values(layer, 0, x.shape[-1], dtype=x.dtype, device=x.device)
            return x + noise[None, None, :] * block.linear(x)

        block.forward = forward
    try:
        yield
    finally:
        for block, original in zip(blocks, originals):
            block.forward = original


def reference_roundtrip(model: SnacCodec, audio: Tensor, codes: list[Tensor], options: dict[str, Any]) -> Reference:
    reference = build_reference(model.config, model.state_dict()).to(device=audio.device, dtype=audio.dtype)

    def roundtrip() -> Tensor:
        with torch.no_grad():
            return reference.decode(reference.encode(audio))

    def decode() -> Tensor:
        with torch.no_grad(), positional_noise_in(reference, 0):
            return reference.decode(codes)

    return Reference("snac", roundtrip, decode)


def quiet_reference_decoder(model: SnacCodec) -> Any:
    """``codes -> audio`` by the ``snac`` package holding ``model``'s weights, noise off (its
    noise blocks pass their input through), as a window decoder for the Orpheus baseline."""
    from snac.layers import NoiseBlock

    reference = build_reference(model.config, model.state_dict()).to(device=model.device, dtype=model.dtype)
    for block in reference.modules():
        if isinstance(block, NoiseBlock):
            block.forward = lambda x: x  # type: ignore[method-assign]

    def decode(codes: list[Tensor]) -> Tensor:
        with torch.no_grad():
            return reference.decode(codes)

    return decode
