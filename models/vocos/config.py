"""Vocos hyper-parameters, read from the published ``config.yaml`` (data only, no class import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["VocosConfig", "VOCOS_MEL_24KHZ", "VOCOS_ENCODEC_24KHZ"]

_FEATURES = {
    "vocos.feature_extractors.MelSpectrogramFeatures": "mel",
    "vocos.feature_extractors.EncodecFeatures": "encodec",
}


@dataclass(frozen=True)
class VocosConfig:
    """Feature extractor, ConvNeXt backbone and ISTFT head of one Vocos model."""

    features: Literal["mel", "encodec"] = "mel"
    sample_rate: int = 24_000
    # backbone
    input_channels: int = 100
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    layer_scale_init: float | None = None  # None: 1 / num_layers, as Vocos does
    adanorm_num_embeddings: int | None = None
    # ISTFT head
    n_fft: int = 1024
    hop_length: int = 256
    padding: Literal["center", "same"] = "center"
    # mel features
    mel_n_fft: int = 1024
    mel_hop_length: int = 256
    n_mels: int = 100
    mel_padding: Literal["center", "same"] = "center"
    # EnCodec features
    bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0)
    with_encodec_encoder: bool = True  # False when no EnCodec weights came with the checkpoint

    @classmethod
    def from_yaml_dict(cls, data: Mapping[str, Any]) -> "VocosConfig":
        """Read the jsonargparse-style ``config.yaml`` of ``charactr/vocos-*`` (classes are
        checked by name, never imported)."""
        try:
            features, backbone, head = data["feature_extractor"], data["backbone"], data["head"]
        except (KeyError, TypeError) as exc:
            raise CheckpointMismatchError(f"config.yaml lacks {exc}: not a Vocos config") from exc
        kind = _FEATURES.get(features.get("class_path", ""))
        if kind is None:
            raise CheckpointMismatchError(f"unsupported Vocos feature extractor {features.get('class_path')!r}")
        if backbone.get("class_path") != "vocos.models.VocosBackbone":
            raise CheckpointMismatchError(f"unsupported Vocos backbone {backbone.get('class_path')!r}")
        if head.get("class_path") != "vocos.heads.ISTFTHead":
            raise CheckpointMismatchError(f"unsupported Vocos head {head.get('class_path')!r}")
        f_args, b_args, h_args = (d.get("init_args", {}) or {} for d in (features, backbone, head))
        values: dict[str, Any] = dict(
            features=kind,
            input_channels=int(b_args["input_channels"]),
            dim=int(b_args["dim"]),
            intermediate_dim=int(b_args["intermediate_dim"]),
            num_layers=int(b_args["num_layers"]),
            layer_scale_init=b_args.get("layer_scale_init_value"),
            adanorm_num_embeddings=b_args.get("adanorm_num_embeddings"),
            n_fft=int(h_args["n_fft"]),
            hop_length=int(h_args["hop_length"]),
            padding=h_args.get("padding", "same"),
        )
        if int(h_args.get("dim", values["dim"])) != values["dim"]:
            raise CheckpointMismatchError("head dim differs from backbone dim")
        if kind == "mel":
            values.update(
                sample_rate=int(f_args.get("sample_rate", 24_000)),
                mel_n_fft=int(f_args.get("n_fft", 1024)),
                mel_hop_length=int(f_args.get("hop_length", 256)),
                n_mels=int(f_args.get("n_mels", 100)),
                mel_padding=f_args.get("padding", "center"),
            )
        else:
            if f_args.get("encodec_model", "encodec_24khz") != "encodec_24khz":
                raise CheckpointMismatchError("only Vocos on encodec_24khz features is supported")
            values["bandwidths"] = tuple(float(b) for b in f_args.get("bandwidths", (1.5, 3.0, 6.0, 12.0)))
        return cls(**values)


VOCOS_MEL_24KHZ = VocosConfig()
VOCOS_ENCODEC_24KHZ = VocosConfig(
    features="encodec", input_channels=128, dim=384, intermediate_dim=1152, num_layers=8,
    adanorm_num_embeddings=4, n_fft=1280, hop_length=320, padding="same",
)
