"""The ``encodec`` package (facebookresearch/encodec) as a benchmark reference, given our weights."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .codec import EncodecCodec

__all__ = ["official_state_dict", "reference_roundtrip"]


def official_state_dict(model: EncodecCodec) -> dict[str, Tensor]:
    """Our weights in the official ``encodec_24khz-*.th`` layout (weight norm re-expressed as
    ``g = ‖w‖``, ``v = w``, which gives back ``w``)."""
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "quantizer":
            out[f"quantizer.vq.layers.{parts[2]}._codebook.embed"] = value
            continue
        prefix = f"{parts[0]}.model.{'.'.join(parts[1:-1])}"
        module = model.get_submodule(".".join(parts[:-1]))
        if ".lstm." in key:
            out[f"{parts[0]}.model.{'.'.join(parts[1:])}"] = value
            continue
        wrapper = "convtr.convtr" if type(module).__name__ == "StreamingConvTranspose1d" else "conv.conv"
        if parts[-1] == "weight":
            out[f"{prefix}.{wrapper}.weight_g"] = value.flatten(1).norm(dim=1).view(-1, 1, 1)
            out[f"{prefix}.{wrapper}.weight_v"] = value
        else:
            out[f"{prefix}.{wrapper}.{parts[-1]}"] = value
    return out


def reference_roundtrip(model: EncodecCodec, audio: Tensor, options: dict[str, Any]) -> tuple[str, Callable[[], Tensor]]:
    from encodec import EncodecModel  # ImportError when not installed

    reference = EncodecModel.encodec_model_24khz(pretrained=False)
    state = official_state_dict(model)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith(("inited", "cluster_size", "embed_avg")) for k in missing):
        raise RuntimeError(f"weight export mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    reference = reference.to(device=audio.device, dtype=audio.dtype).eval()
    if "bandwidth" in options:
        reference.set_target_bandwidth(options["bandwidth"])

    def run() -> Tensor:
        with torch.no_grad():
            return reference.decode(reference.encode(audio))

    return "encodec", run
