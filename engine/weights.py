"""Checkpoints: safe reading, hub download, key mapping, weight-norm folding, strict loading.

Nothing here executes code from a checkpoint: pickled files are read with
``torch.load(weights_only=True)`` and safetensors with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .errors import CheckpointMismatchError, CorruptCheckpointError, WeightsUnavailableError

__all__ = [
    "read_json_object",
    "read_tensors",
    "verify_checksum",
    "find_file",
    "rename_keys",
    "fold_weight_norm",
    "export_state",
    "load_state",
    "resolve_weights",
]

_PICKLE_SUFFIXES = (".th", ".pt", ".pth", ".bin", ".ckpt", ".tar")
_CHECKSUM_NAME = re.compile(r"^.+-([0-9a-f]{8})\.[A-Za-z]+$")


def read_tensors(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file into a dict (tensors, or nested dicts of tensors).

    Raises:
        CorruptCheckpointError: unreadable, truncated, not a dict, or it would need to run code.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"checkpoint file {path} does not exist")
    verify_checksum(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for broken files
        raise CorruptCheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {_first_line(exc)}. "
            "The file may be truncated or corrupt, or pickle code that codecstream refuses to run "
            "(only plain tensors load, with weights_only=True)."
        ) from exc
    if not isinstance(data, Mapping):
        raise CorruptCheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dict of tensors")
    return dict(data)


def verify_checksum(path: Path) -> None:
    """Check files named like ``encodec_24khz-d7cc33bc.th`` against their sha256 prefix,
    as the official loaders do."""
    match = _CHECKSUM_NAME.match(path.name)
    if match is None or path.suffix not in _PICKLE_SUFFIXES:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise CorruptCheckpointError(
            f"checkpoint {path} fails its checksum: its name promises sha256 {match.group(1)}..., "
            f"the file has {digest.hexdigest()[:8]}... (download it again)"
        )


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A checkpoint's JSON config file as a dict.

    Raises:
        CorruptCheckpointError: unreadable or not JSON. CheckpointMismatchError: JSON, but not
        an object (``what`` names what it should hold).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointMismatchError(f"{path} holds a {type(data).__name__}, not {what}")
    return data


def find_file(directory: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``candidates`` (glob patterns) present in ``directory``."""
    for pattern in candidates:
        hits = sorted(directory.glob(pattern))
        if hits:
            return hits[0]
    return None


def rename_keys(state: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]) -> dict[str, Tensor]:
    """Apply ``re.sub(pattern, replacement, key)`` for each rule in turn to every key."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, replacement in compiled:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


def fold_weight_norm(state: Mapping[str, Tensor], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Replace weight-norm pairs by the weight they stand for, ``g · v / ‖v‖``.

    Accepts both key styles: ``X.weight_g`` / ``X.weight_v`` (older torch, most published files)
    and ``X.parametrizations.weight.original0`` / ``original1`` (newer torch). The norm runs over
    every dimension but 0, which is what ``weight_norm(dim=0)`` does for Conv1d and
    ConvTranspose1d alike. Floating tensors are cast to ``dtype`` first, so the fold happens at
    the precision the model will run in.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value
    for g_suffix, v_suffix in ((".weight_g", ".weight_v"), (".parametrizations.weight.original0", ".parametrizations.weight.original1")):
        for key in [k for k in out if k.endswith(g_suffix)]:
            prefix = key[: -len(g_suffix)]
            v_key = prefix + v_suffix
            if v_key not in out:
                continue
            g, v = out.pop(key), out.pop(v_key)
            out[prefix + ".weight"] = torch._weight_norm(v, g, 0)
    return out


_WEIGHT_NORM_PAIRS = ((".weight_g", ".weight_v"), (".parametrizations.weight.original0", ".parametrizations.weight.original1"))


def export_state(
    ours: Mapping[str, Tensor], layout: Mapping[str, Tensor], to_plugin: Callable[[dict[str, Tensor]], Mapping[str, Tensor]]
) -> dict[str, Tensor]:
    """Our weights in another model's layout (a reference implementation's, for benchmarks).

    ``layout`` is that model's own state dict and ``to_plugin`` the renaming a checkpoint reader
    applies to it (before :func:`fold_weight_norm`). Renaming passes each tensor through
    unchanged, so following the tensors through ``to_plugin`` gives the key map without writing
    its inverse. Weight-norm pairs become ``g = ‖w‖``, ``v = w`` (which gives back ``w``).
    Raises :class:`CheckpointMismatchError` when a ``layout`` key finds no weight of ours.
    """
    source = {id(tensor): key for key, tensor in layout.items()}
    out: dict[str, Tensor] = {}
    for our_key, tensor in to_plugin(dict(layout)).items():
        layout_key = source.get(id(tensor))
        if layout_key is None:
            continue
        for g_suffix, v_suffix in _WEIGHT_NORM_PAIRS:
            if our_key.endswith((g_suffix, v_suffix)):
                suffix = g_suffix if our_key.endswith(g_suffix) else v_suffix
                weight = ours.get(our_key[: -len(suffix)] + ".weight")
                if weight is not None and suffix == g_suffix:  # norm over every dimension but 0
                    weight = weight.flatten(1).norm(dim=1).reshape(tensor.shape)
                break
        else:
            weight = ours.get(our_key)
        if weight is not None:
            out[layout_key] = weight.reshape(tensor.shape).to(tensor.dtype)
    missing = [key for key in layout if key not in out]
    if missing:
        raise CheckpointMismatchError(f"no weight of ours for {len(missing)} reference tensors, e.g. {missing[:3]}")
    return out


def load_state(
    model: nn.Module,
    state: Mapping[str, Tensor],
    *,
    ignore: Sequence[str] = (),
    source: str = "checkpoint",
) -> None:
    """Copy ``state`` into ``model``, refusing anything that does not fit exactly.

    Args:
        ignore: regular expressions of checkpoint keys to drop silently (training-only buffers).
    Raises:
        CheckpointMismatchError: listing missing, unexpected and mis-shaped tensors.
    """
    patterns = [re.compile(p) for p in ignore]
    state = {k: v for k, v in state.items() if not any(p.search(k) for p in patterns)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit the model:"]
        if missing:
            lines.append(f"  missing {len(missing)}: {_preview(missing)}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)}: {_preview(unexpected)}")
        if mismatched:
            lines.append(
                "  wrong shape: "
                + _preview([f"{k} {list(a)} (model {list(b)})" for k, a, b in mismatched])
            )
        lines.append("Is it a checkpoint of this model (and of this size)?")
        raise CheckpointMismatchError(
            "\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched
        )
    with torch.no_grad():
        for key, target in expected.items():
            target.copy_(state[key].to(dtype=target.dtype))


def resolve_weights(weights: str | Path, *, hub_patterns: Sequence[str], model_name: str) -> Path:
    """A local file or directory for ``weights``: a path as given, else a hub id downloaded
    (or found in the cache) through ``huggingface_hub``.

    Raises:
        WeightsUnavailableError: saying what was tried and how to pass a local path instead.
    """
    path = Path(weights).expanduser()
    if path.exists():
        return path
    text = str(weights)
    looks_like_hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None
    if not looks_like_hub_id:
        raise WeightsUnavailableError(
            f"weights {text!r} for {model_name}: no such file or directory, and not a hub id "
            "(owner/name). Pass the path of a checkpoint file or directory."
        )
    try:
        import huggingface_hub
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"weights {text!r} for {model_name}: not a local path, and huggingface_hub is not "
            "installed to download it (pip install 'codecstream[hub]'). Or download the files "
            "elsewhere and pass weights=PATH."
        ) from exc
    try:
        local = huggingface_hub.snapshot_download(text, allow_patterns=list(hub_patterns) or None)
    except Exception as exc:  # offline, unknown repo, gated repo...
        raise WeightsUnavailableError(
            f"weights {text!r} for {model_name}: not a local path, and the download from the "
            f"Hugging Face hub failed ({type(exc).__name__}: {_first_line(exc)}). Tried the local "
            "path and the hub cache. On a machine without network, copy the checkpoint here and "
            "pass weights=PATH (file or directory)."
        ) from exc
    return Path(local)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _preview(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
