"""The ``encodec`` package (facebookresearch/encodec) as a benchmark reference, given our weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from codecstream.contract import Reference
from codecstream.streaming import StreamingConvTranspose1d

from .codec import EncodecCodec
from .config import EncodecConfig
from ..blocks.seanet import SegmentConv
from .segments import SegmentCodes

__all__ = ["official_state_dict", "package_model", "reference_roundtrip"]


def official_state_dict(
    *, encoder: nn.Module | None = None, quantizer: nn.Module | None = None, decoder: nn.Module | None = None
) -> dict[str, Tensor]:
    """Our EnCodec parts' weights in the official ``encodec_*.th`` layout, weight norm
    re-expressed as ``g = ‖w‖``, ``v = w`` (which gives back ``w``); the 48 kHz model's
    time-group-norm convs keep a plain ``weight``."""
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
            module = network.get_submodule(path)
            if isinstance(module, nn.GroupNorm):  # X.norm beside X.conv (time group norm)
                owner = path.rsplit(".", 1)[0]
                conv = network.get_submodule(owner).conv  # type: ignore[union-attr]
                kind = "convtr" if isinstance(conv, StreamingConvTranspose1d) else "conv"
                out[f"{side}.model.{owner}.{kind}.norm.{leaf}"] = value
                continue
            # Time-group-norm convs (48 kHz) sit in a SegmentConv and carry no weight norm.
            segment = path.endswith(".conv") and isinstance(network.get_submodule(path.rsplit(".", 1)[0]), SegmentConv)
            if segment:
                path = path.rsplit(".", 1)[0]
            kind = "convtr" if isinstance(module, StreamingConvTranspose1d) else "conv"
            if leaf == "weight" and not segment:
                out[f"{side}.model.{path}.{kind}.{kind}.weight_g"] = value.flatten(1).norm(dim=1).view(-1, 1, 1)
                out[f"{side}.model.{path}.{kind}.{kind}.weight_v"] = value
            else:
                out[f"{side}.model.{path}.{kind}.{kind}.{leaf}"] = value
    return out


def package_model(config: EncodecConfig) -> Any:
    """The ``encodec`` package's ``EncodecModel`` for ``config`` (weights as initialised)."""
    from encodec.model import EncodecModel  # ImportError when not installed
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    common: dict[str, Any] = dict(
        channels=config.channels, dimension=config.dimension, n_filters=config.n_filters,
        n_residual_layers=config.n_residual_layers, ratios=list(config.ratios), norm=config.norm,
        kernel_size=config.kernel_size, last_kernel_size=config.last_kernel_size,
        residual_kernel_size=config.residual_kernel_size, dilation_base=config.dilation_base,
        causal=config.causal, pad_mode=config.pad_mode, true_skip=config.true_skip,
        compress=config.compress, lstm=config.lstm_layers,
    )
    quantizer = ResidualVectorQuantizer(dimension=config.dimension, n_q=config.num_codebooks, bins=config.codebook_size)
    return EncodecModel(
        SEANetEncoder(**common), SEANetDecoder(**common), quantizer, list(config.target_bandwidths),
        config.sample_rate, config.channels, normalize=config.normalize, segment=config.segment_s,
        overlap=config.overlap,
    )


def reference_roundtrip(model: EncodecCodec, audio: Tensor, codes: Any, options: dict[str, Any]) -> Reference:
    reference = package_model(model.config)
    state = official_state_dict(encoder=model.encoder, quantizer=model.quantizer, decoder=model.decoder)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith(("inited", "cluster_size", "embed_avg")) for k in missing):
        raise RuntimeError(f"weight export mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    reference = reference.to(device=audio.device, dtype=audio.dtype).eval()
    reference.set_target_bandwidth(options.get("bandwidth", model.config.target_bandwidths[-1]))
    frames = list(codes) if isinstance(codes, SegmentCodes) else [(codes, None)]

    def roundtrip() -> Tensor:
        with torch.no_grad():
            return reference.decode(reference.encode(audio))

    def decode() -> Tensor:
        with torch.no_grad():
            return reference.decode(frames)

    return Reference("encodec", roundtrip, decode)
