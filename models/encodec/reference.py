"""The ``encodec`` package (facebookresearch/encodec) as a benchmark reference, given our weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from codecstream.registry import Reference
from codecstream.streaming import StreamingConvTranspose1d

from .codec import EncodecCodec

__all__ = ["official_state_dict", "reference_roundtrip"]


def official_state_dict(
    *, encoder: nn.Module | None = None, quantizer: nn.Module | None = None, decoder: nn.Module | None = None
) -> dict[str, Tensor]:
    """Our EnCodec parts' weights in the official ``encodec_24khz-*.th`` layout, weight norm
    re-expressed as ``g = ‖w‖``, ``v = w`` (which gives back ``w``)."""
    out: dict[str, Tensor] = {}
    if quantizer is not None:
        for key, value in quantizer.state_dict().items():  # layers.{i}.embed
            out[f"quantizer.vq.layers.{key.split('.')[1]}._codebook.embed"] = value
    for side, network in (("encoder", encoder), ("decoder", decoder)):
        if network is None:
            continue
        for key, value in network.state_dict().items():
            path, leaf = key.rsplit(".", 1)
            if ".lstm" in key:
                out[f"{side}.model.{key}"] = value
                continue
            wrapper = "convtr.convtr" if isinstance(network.get_submodule(path), StreamingConvTranspose1d) else "conv.conv"
            if leaf == "weight":
                out[f"{side}.model.{path}.{wrapper}.weight_g"] = value.flatten(1).norm(dim=1).view(-1, 1, 1)
                out[f"{side}.model.{path}.{wrapper}.weight_v"] = value
            else:
                out[f"{side}.model.{path}.{wrapper}.{leaf}"] = value
    return out


def reference_roundtrip(model: EncodecCodec, audio: Tensor, codes: Tensor, options: dict[str, Any]) -> Reference:
    from encodec import EncodecModel  # ImportError when not installed

    reference = EncodecModel.encodec_model_24khz(pretrained=False)
    state = official_state_dict(encoder=model.encoder, quantizer=model.quantizer, decoder=model.decoder)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith(("inited", "cluster_size", "embed_avg")) for k in missing):
        raise RuntimeError(f"weight export mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    reference = reference.to(device=audio.device, dtype=audio.dtype).eval()
    if "bandwidth" in options:
        reference.set_target_bandwidth(options["bandwidth"])

    def roundtrip() -> Tensor:
        with torch.no_grad():
            return reference.decode(reference.encode(audio))

    def decode() -> Tensor:
        with torch.no_grad():
            return reference.decode([(codes, None)])

    return Reference("encodec", roundtrip, decode)
