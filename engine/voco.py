"""``get_voco(name)``: a model's continuous latent space by name, the seed's latent interface.

The names are the seed model card's (``mel``, ``encodec``, ``dac``, ``dacvae``, ``oobleck``); each loads a
registered model and returns its :class:`~codecstream.latents.LatentAutoencoder`.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import UnknownModelError
from .latents import LatentAutoencoder
from .registry import load

__all__ = ["LATENT_MODELS", "get_voco"]

#: ``get_voco`` names and the registered model each one loads.
LATENT_MODELS: dict[str, str] = {
    "mel": "vocos-mel-24khz",
    "encodec": "vocos-encodec-24khz",
    "dac": "dac-44khz",
    "dac-44khz": "dac-44khz",
    "dac-24khz": "dac-24khz",
    "dac-16khz": "dac-16khz",
    "oobleck": "oobleck",
    "dacvae": "dacvae",
}



def get_voco(
    name: str,
    weights: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> LatentAutoencoder:
    """The continuous latent space of model ``name`` (:data:`LATENT_MODELS`).

    - ``mel``: Vocos 24 kHz, 100-band log-mel at 93.75 Hz (``D = 100``).
    - ``encodec``: EnCodec 24 kHz at ``bandwidth`` kbps (default 6: 8 code-books), its codes
      embedded and summed as Vocos reads them (``D = 128``, 75 Hz), decoded by Vocos.
    - ``dac`` (``dac-44khz``; also ``dac-24khz``, ``dac-16khz``): the encoder's output before
      quantisation (``D = 1024``), decoded by the DAC decoder.
    - ``dacvae``: the fork's DAC-style VAE (small preset, inferred), 48 kHz; each channel encoded
      as a mono pass, the posterior means concatenated left first (``D = 2 · 1024``, 23.4 Hz).
    - ``oobleck``: Stable Audio Open's VAE, the posterior mean (``D = 64``, stereo, 21.5 Hz).

    ``weights``, ``device``, ``dtype`` as :func:`codecstream.load`; ``options`` go to the
    model's ``latents()`` (``bandwidth`` for ``encodec``). Audio is padded with zeros to a whole
    hop at the end, so ``decode(encode(x))`` covers all of ``x``.
    """
    if name not in LATENT_MODELS:
        raise UnknownModelError(f"no latent model {name!r}; choose from {', '.join(LATENT_MODELS)}")
    model = load(LATENT_MODELS[name], weights, device=device, dtype=dtype)
    voco = model.latents(**options)
    voco.name = name
    return voco
