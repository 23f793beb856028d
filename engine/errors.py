"""The exceptions codecstream raises, in one hierarchy.

Every error the package raises on purpose derives from :class:`CodecStreamError`, so
``except codecstream.CodecStreamError`` catches them all. Errors about what a caller passed
also derive from the matching builtin (``ValueError``, ``TypeError``, ``KeyError``) so code
written against the builtins keeps working::

    CodecStreamError
    ├── InputError (ValueError)           bad audio or codes handed to a model or stream
    │   ├── ShapeError                    wrong number of dimensions or batch size
    │   ├── ChannelError                  wrong number of audio channels
    │   ├── SampleRateError               audio at a rate the model does not run at
    │   ├── DTypeError (also TypeError)   integer audio, float codes, ...
    │   ├── NonFiniteError                NaN or Inf in the audio
    │   ├── CodeRangeError                codes outside [0, codebook_size)
    │   └── OptionError                   an unknown bandwidth, mode or option value
    ├── UnknownModelError (KeyError)      no plugin registered under that name
    ├── CheckpointError                   weights that cannot be used
    │   ├── CorruptCheckpointError        unreadable, truncated or checksum mismatch
    │   ├── CheckpointMismatchError       missing, unexpected or mis-shaped tensors
    │   └── WeightsUnavailableError       not found locally and cannot be downloaded
    ├── StreamStateError                  push after flush, mixing code layouts mid-stream
    ├── CodesFileError                    a codes file that is not in codecstream's format
    └── ConfigError (ValueError)          a server setting that cannot work or is unsafe
"""

from __future__ import annotations

__all__ = [
    "CodecStreamError",
    "InputError",
    "ShapeError",
    "ChannelError",
    "SampleRateError",
    "DTypeError",
    "NonFiniteError",
    "CodeRangeError",
    "OptionError",
    "UnknownModelError",
    "CheckpointError",
    "CorruptCheckpointError",
    "CheckpointMismatchError",
    "WeightsUnavailableError",
    "StreamStateError",
    "CodesFileError",
    "ConfigError",
]


class CodecStreamError(Exception):
    """Base class of every error codecstream raises on purpose."""


class InputError(CodecStreamError, ValueError):
    """Audio or codes that a model or stream cannot take."""


class ShapeError(InputError):
    """Wrong number of dimensions, batch size or code-book count."""


class ChannelError(InputError):
    """Audio with a channel count the model does not have."""


class SampleRateError(InputError):
    """Audio at a sample rate the model does not run at (resample it first)."""


class DTypeError(InputError, TypeError):
    """A tensor of the wrong kind: integer audio, floating-point codes, complex data."""


class NonFiniteError(InputError):
    """NaN or infinite values in the audio."""


class CodeRangeError(InputError):
    """Codes outside ``[0, codebook_size)`` or a code layout the model does not use."""


class OptionError(InputError):
    """An option value the model does not support (bandwidth, mode, chunk size...)."""


class UnknownModelError(CodecStreamError, KeyError):
    """No plugin is registered under the requested name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


class CheckpointError(CodecStreamError):
    """Weights that cannot be loaded into the model."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that cannot be read, is truncated or fails its checksum."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose tensors do not fit the model.

    Attributes:
        missing: model tensors the checkpoint does not provide.
        unexpected: checkpoint tensors the model has no place for.
        mismatched: ``(name, checkpoint_shape, model_shape)`` for tensors of the wrong shape.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.mismatched = list(mismatched or [])


class WeightsUnavailableError(CheckpointError):
    """Weights that are neither on disk nor downloadable from here."""


class StreamStateError(CodecStreamError):
    """A stream used out of order: a push after ``flush()``, or a layout change mid-stream."""


class CodesFileError(CodecStreamError):
    """A file that is not a codecstream codes file, or one written for another model."""


class ConfigError(CodecStreamError, ValueError):
    """A server or runtime setting that cannot work, or would be unsafe (an empty token, a
    public address without a token)."""
