"""HiFi-GAN V1 hyper-parameters, as jik876's ``config.json`` names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["HifiganConfig", "HIFIGAN_V1"]


@dataclass(frozen=True)
class HifiganConfig:
    sampling_rate: int = 22_050
    num_mels: int = 80
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float = 8000.0
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "HifiganConfig":
        if str(data.get("resblock", "1")) != "1":
            raise CheckpointMismatchError("only HiFi-GAN's ResBlock1 generators (V1, V3-style configs with resblock '1') are supported")
        try:
            return cls(
                sampling_rate=int(data["sampling_rate"]),
                num_mels=int(data["num_mels"]),
                n_fft=int(data["n_fft"]),
                hop_size=int(data["hop_size"]),
                win_size=int(data["win_size"]),
                fmin=float(data["fmin"]),
                fmax=float(data["fmax"]),
                upsample_rates=tuple(int(v) for v in data["upsample_rates"]),
                upsample_kernel_sizes=tuple(int(v) for v in data["upsample_kernel_sizes"]),
                upsample_initial_channel=int(data["upsample_initial_channel"]),
                resblock_kernel_sizes=tuple(int(v) for v in data["resblock_kernel_sizes"]),
                resblock_dilation_sizes=tuple(tuple(int(d) for d in ds) for ds in data["resblock_dilation_sizes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointMismatchError(f"config.json is not a HiFi-GAN config: {exc}") from exc


HIFIGAN_V1 = HifiganConfig()
