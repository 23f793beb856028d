"""The ``vocos`` package (gemelo-ai/vocos) holding our weights: the parity tests' and the
benchmark's reference."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor

from codecstream.contract import Reference
from codecstream.weights import rename_keys

from ..encodec.reference import official_state_dict as encodec_official_state_dict
from .codec import VocosEncodec, VocosMel, _Vocos
from .config import VocosConfig

__all__ = ["official_state_dict", "build_reference", "reference_mel", "reference_encodec", "encodec_offline"]

_TO_OFFICIAL = [
    (r"^decoder\.backbone\.convnext\.(\d+)\.block\.", r"backbone.convnext.\1."),
    (r"^decoder\.", ""),
    (r"^encoder\.window$", "feature_extractor.mel_spec.spectrogram.window"),
    (r"^encoder\.filterbank$", "feature_extractor.mel_spec.mel_scale.fb"),
    (r"^codebook_weights$", "feature_extractor.codebook_weights"),
]


def official_state_dict(model: _Vocos) -> dict[str, Tensor]:
    """Our weights in the layout of the published ``pytorch_model.bin`` (plus, for the EnCodec
    variant, the EnCodec encoder under ``feature_extractor.encodec.``, as the vocos package keeps it)."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("encodec_")}
    state = rename_keys(own, _TO_OFFICIAL)
    if isinstance(model, VocosEncodec) and model.has_encoder:
        encodec = encodec_official_state_dict(encoder=model.encodec_encoder, quantizer=model.encodec_quantizer)
        state.update({"feature_extractor.encodec." + k: v for k, v in encodec.items()})
    return state


@contextlib.contextmanager
def encodec_offline() -> Iterator[None]:
    """vocos's ``EncodecFeatures`` downloads EnCodec weights in its constructor; build it with a
    random EnCodec instead (its weights are replaced right after)."""
    from encodec import EncodecModel

    original = EncodecModel.encodec_model_24khz
    EncodecModel.encodec_model_24khz = staticmethod(lambda pretrained=True, repository=None: original(pretrained=False))  # type: ignore[method-assign]
    try:
        yield
    finally:
        EncodecModel.encodec_model_24khz = original  # type: ignore[method-assign]


def build_reference(config: VocosConfig, state: dict[str, Tensor] | None = None) -> Any:
    """A ``vocos.Vocos`` of ``config`` (random weights, or ``state`` in the official layout)."""
    from vocos.feature_extractors import EncodecFeatures, MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone
    from vocos.pretrained import Vocos

    if config.features == "mel":
        features: Any = MelSpectrogramFeatures(
            sample_rate=config.sample_rate, n_fft=config.mel_n_fft, hop_length=config.mel_hop_length,
            n_mels=config.n_mels, padding=config.mel_padding,
        )
    else:
        with encodec_offline():
            features = EncodecFeatures(bandwidths=list(config.bandwidths))
    backbone = VocosBackbone(
        input_channels=config.input_channels, dim=config.dim, intermediate_dim=config.intermediate_dim,
        num_layers=config.num_layers, layer_scale_init_value=config.layer_scale_init,
        adanorm_num_embeddings=config.adanorm_num_embeddings,
    )
    head = ISTFTHead(dim=config.dim, n_fft=config.n_fft, hop_length=config.hop_length, padding=config.padding)
    vocos = Vocos(features, backbone, head).eval()
    if state is not None:
        missing, unexpected = vocos.load_state_dict(state, strict=False)
        allowed = ("feature_extractor.encodec.decoder.", "inited", "cluster_size", "embed_avg")
        bad = [k for k in missing if not (k.startswith(allowed[0]) or k.endswith(allowed[1:]))]
        if unexpected or bad:
            raise RuntimeError(f"weight export mismatch: missing {bad[:3]}, unexpected {unexpected[:3]}")
    return vocos


def reference_mel(model: VocosMel, audio: Tensor, features: Tensor, options: dict[str, Any]) -> Reference:
    vocos = build_reference(model.config, official_state_dict(model)).to(device=audio.device, dtype=audio.dtype)
    return Reference("vocos", lambda: vocos(audio[:, 0]), lambda: vocos.decode(features))


def reference_encodec(model: VocosEncodec, audio: Tensor, codes: Tensor, options: dict[str, Any]) -> Reference:
    vocos = build_reference(model.config, official_state_dict(model)).to(device=audio.device, dtype=audio.dtype)
    bandwidth_id = torch.tensor([sorted(model.books_per_bandwidth.values()).index(codes.shape[1])], device=audio.device)

    def decode() -> Tensor:
        return vocos.decode(vocos.codes_to_features(codes.transpose(0, 1)), bandwidth_id=bandwidth_id)

    return Reference("vocos", lambda: vocos(audio[:, 0], bandwidth_id=bandwidth_id), decode)
