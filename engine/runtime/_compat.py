"""Old names kept working for one release, with a :class:`DeprecationWarning`.

The runtime and the audio I/O once said "frames" for audio samples (per channel); in the engine
"frames" means code frames only, so those keywords and attributes are now ``*_samples``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Generic, ParamSpec, TypeVar, cast, overload

__all__ = ["renamed_keywords", "Renamed"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def renamed_keywords(**renames: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (or ``__init__``) whose keywords ``old=new`` were renamed: a call with
    an old keyword warns and passes the value under the new one; both at once is a TypeError.
    The signature the type checker sees is the new one."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        owner = function.__qualname__.removesuffix(".__init__")

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{owner}() got both {old!r} and its new name {new!r}")
                    warnings.warn(
                        f"{owner}({old}=...) is now {owner}({new}=...); the old keyword goes in the next release",
                        DeprecationWarning, stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


class Renamed(Generic[T]):
    """A class attribute standing for a renamed attribute or method: reading the old name warns
    and returns the new one (``dropped_frames = Renamed[int]("dropped_samples")``)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    @overload
    def __get__(self, instance: None, owner: type) -> "Renamed[T]": ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> "T | Renamed[T]":
        if instance is None:
            return self
        warnings.warn(
            f"{owner.__name__}.{self.old} is now {owner.__name__}.{self.new}; the old name goes in the next release",
            DeprecationWarning, stacklevel=2,
        )
        return cast(T, getattr(instance, self.new))
