"""Model plugins shipped with codecstream: one sub-package per model family."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from codecstream.contract import ModelSpec

__all__ = ["builtin_specs"]


def builtin_specs() -> Iterator["ModelSpec"]:
    """Every built-in model spec (imports the families lazily)."""
    from . import dac, dacvae, encodec, hifigan, mimi, neucodec, oobleck, snac, vocos

    yield from encodec.SPECS
    yield from vocos.SPECS
    yield from snac.SPECS
    yield from hifigan.SPECS
    yield from dac.SPECS
    yield from oobleck.SPECS
    yield from dacvae.SPECS
    yield from mimi.SPECS
    yield from neucodec.SPECS
