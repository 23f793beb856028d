"""Model names → plugins: the closed built-in registry plus the ``codecstream.models``
entry-point group, and :func:`load`.

A third-party package adds models without touching this repository by declaring, in its
``pyproject.toml``::

    [project.entry-points."codecstream.models"]
    mycodec = "mypackage.plugin:MODEL_SPECS"   # a ModelSpec, a list of them, or a function returning either
"""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from .contract import ModelSpec, Reference
from .errors import OptionError, UnknownModelError
from .plugin import Codec
from .weights import fold_weight_norm, load_state, resolve_weights

__all__ = ["ModelSpec", "Reference", "list_models", "get_spec", "load", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "codecstream.models"


def _builtin_specs() -> list[ModelSpec]:
    from codecstream.models import builtin_specs

    return list(builtin_specs())


def _entry_point_specs() -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = entry.load()
            if callable(found) and not isinstance(found, ModelSpec):
                found = found()
            items: Iterable[Any] = [found] if isinstance(found, ModelSpec) else found
            for item in items:
                if not isinstance(item, ModelSpec):
                    raise TypeError(f"expected ModelSpec, got {type(item).__name__}")
                specs.append(item)
        except Exception as exc:  # one broken plugin must not hide the others
            warnings.warn(f"codecstream plugin {entry.name!r} ({entry.value}) failed to load: {exc}", stacklevel=2)
    return specs


def _all_specs() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for spec in _builtin_specs():
        specs[spec.name] = spec
    for spec in _entry_point_specs():
        if spec.name in specs:
            warnings.warn(f"plugin model {spec.name!r} clashes with an existing model; ignored", stacklevel=2)
            continue
        specs[spec.name] = spec
    return specs


def list_models() -> list[str]:
    """Names of every model available: the built-ins and those of installed plugins."""
    return sorted(_all_specs())


def get_spec(name: str) -> ModelSpec:
    specs = _all_specs()
    if name not in specs:
        close = [n for n in specs if name.split("-")[0] in n]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}. Available: {', '.join(sorted(specs))}.{hint}")
    return specs[name]


def load(
    name: str,
    weights: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Codec:
    """Build model ``name`` and load its weights.

    Args:
        weights: ``None`` for the published weights (downloaded from the hub, or found in its
            cache); ``"random"`` for the published architecture with seeded random weights
            (tests, benchmarks); a path to a checkpoint file or directory in the official
            layout (or safetensors); or a hub id ``owner/name``.
        device, dtype: where and at what precision the model runs.
        seed: the seed of ``weights="random"``.
    Returns:
        The model in eval mode, gradients off.
    """
    spec = get_spec(name)
    model: Codec
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise OptionError(f"dtype must be a floating torch dtype, got {dtype!r}")
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = spec.build(spec.default_config)
    else:
        if weights is None and spec.locate_default is not None:
            path = spec.locate_default()
        else:
            source = weights if weights is not None else spec.hub_id
            if source is None:
                raise OptionError(f"{name} has no published weights to download; pass weights=PATH or 'random'")
            path = resolve_weights(source, hub_patterns=spec.hub_patterns, model_name=name)
        config, state = spec.read_weights(path)
        model = spec.build(config)
        load_state(model, fold_weight_norm(state, dtype), ignore=spec.ignore_keys, source=str(path))
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model

