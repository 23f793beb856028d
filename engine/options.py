"""Typed option schemas: every option a model or stream takes, with its type and range.

A model lists its options as :class:`Option` values (``Codec.option_specs()``); the engine adds
the windowed decoding options (:data:`WINDOWED_OPTIONS`). :func:`check_options` validates a
mapping of option values against a schema **before any work is done**: unknown names, wrong
types (``True`` is not an integer, ``"6"`` is not a number, NaN and infinities are not numbers)
and values outside the documented range raise :class:`~codecstream.errors.OptionError`. Streams
validate through it, and so does the server for every option a client sends, so a number a
client chooses can never size the work a message causes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from .errors import OptionError

__all__ = [
    "Option",
    "WINDOWED_OPTIONS",
    "MAX_WINDOW_FRAMES",
    "check_options",
    "check_value",
    "schema_json",
]

Side = Literal["encoder", "decoder"]

#: Frames one windowed decode may span (context + block + lookahead): bounds the work and the
#: memory of every block a windowed stream emits.
MAX_WINDOW_FRAMES = 512


@dataclass(frozen=True)
class Option:
    """One option: its name, the side it applies to, its type and its range.

    Attributes:
        name: the keyword (``bandwidth``, ``n_codebooks``, ``lookahead_frames``).
        side: ``"encoder"`` or ``"decoder"``: which stream takes it.
        kind: ``int``, ``float``, ``bool`` or ``str``.
        minimum, maximum: inclusive bounds for numbers (None: unbounded on that side; every
            option a client can reach has both).
        choices: the only values allowed, when the option is a list (bandwidths, modes).
        default: what the model uses when the option is not given (None: the model decides).
        doc: one line for users (README, ``/models``).
        unit: what the numbers count, for messages and ``/models`` (``"kbps"``).
    """

    name: str
    side: Side
    kind: type
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    default: Any = None
    unit: str | None = None

    def describe(self) -> dict[str, Any]:
        """The option as JSON-ready data (for ``/models`` and the browser client)."""
        out: dict[str, Any] = {"name": self.name, "side": self.side, "type": self.kind.__name__, "doc": self.doc}
        for key in ("minimum", "maximum", "choices", "default", "unit"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "choices" else value
        return out


def check_value(option: Option, value: Any, what: str = "the model") -> Any:
    """``value`` if it is of ``option``'s type and in its range (ints become floats for float
    options); OptionError otherwise. ``what`` names the model in messages."""
    kind = option.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise OptionError(f"option {option.name} must be {_type_name(kind)}, got {_short(value)}")
    if option.choices is not None and value not in option.choices:
        choices = [repr(c) if isinstance(c, str) else f"{c:g}" if isinstance(c, float) else str(c) for c in option.choices]
        listed = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
        unit = f" {option.unit}" if option.unit else ""
        raise OptionError(f"{what} does not offer {_short(value)}{unit} for {option.name}; choose {listed}{unit}")
    low, high = option.minimum, option.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if low == 0 and kind is int:
            wanted = "a non-negative integer" + (f" up to {high:g}" if high is not None else "")
        else:
            wanted = f"{_bound(low)} to {_bound(high)}"
        raise OptionError(f"option {option.name} must be {wanted}, got {_short(value)}")
    return value


def check_options(schema: Iterable[Option], values: Mapping[str, Any], *, side: Side | None = None, what: str = "the model") -> dict[str, Any]:
    """Validate ``values`` against ``schema`` (only the options of ``side`` when given); None
    stands for the option's default and passes. ``what`` names the model in messages.

    Returns:
        The values, converted (ints to floats where a float is expected).
    Raises:
        OptionError: an unknown option, or a value of the wrong type or out of range.
    """
    known = {option.name: option for option in schema if side is None or option.side == side}
    unknown = sorted(str(name)[:40] for name in values if name not in known)
    if unknown:
        if not known:
            raise OptionError(f"{what} takes no {side + ' ' if side else ''}options, got {unknown}")
        where = f"{what} {side}" if side else what
        raise OptionError(f"{where} got unknown option(s) {unknown}; it accepts {sorted(known)}")
    return {name: None if value is None else check_value(known[name], value, what) for name, value in values.items()}


def schema_json(schema: Iterable[Option]) -> list[dict[str, Any]]:
    return [option.describe() for option in schema]


def _type_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(kind, kind.__name__)


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


WINDOWED_OPTIONS: tuple[Option, ...] = (
    Option("mode", "decoder", str, "exact (equals offline) or windowed (lower latency, an error you measure)", choices=("exact", "windowed")),
    Option("lookahead_frames", "decoder", int, "windowed: future frames each block waits for", 0, MAX_WINDOW_FRAMES - 1),
    Option("context_frames", "decoder", int, "windowed: past frames decoded with each block", 0, MAX_WINDOW_FRAMES - 1),
    Option("block_frames", "decoder", int, "windowed: frames emitted per window decode", 1, MAX_WINDOW_FRAMES),
    Option("crossfade_frames", "decoder", int, "windowed: frames faded between windows (at most block_frames)", 0, MAX_WINDOW_FRAMES),
)
