"""Streaming spectral layers: a log-mel frontend and an inverse STFT with exact edges.

Neither uses torchaudio. The mel frontend is a :class:`FramedModule` (an STFT is a sliding
window over the padded signal), the ISTFT is an overlap-add that divides by the exact
window envelope, including at both ends of the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Literal, Union

import numpy as np
import torch
from torch import Tensor

from .framing import FramedModule, PadMode
from .kernels import overlap_add
from .module import RowInts, StreamContext, StreamingModule, StreamState, advance, common, row_ints, uniform

__all__ = ["StreamingLogMel", "StreamingISTFT", "mel_filterbank", "hann_window"]


def hann_window(length: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Periodic Hann window, ``0.5 - 0.5 cos(2πn / length)`` (torch.hann_window's default)."""
    return torch.hann_window(length, periodic=True, dtype=torch.float64).to(dtype)


def _hz_to_mel(freq: Tensor, scale: str) -> Tensor:
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0
    linear = freq / f_sp
    log_part = min_log_mel + torch.log(freq.clamp_min(min_log_hz) / min_log_hz) / logstep
    return torch.where(freq >= min_log_hz, log_part, linear)


def _mel_to_hz(mels: Tensor, scale: str) -> Tensor:
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0
    linear = f_sp * mels
    log_part = min_log_hz * torch.exp(logstep * (mels - min_log_mel))
    return torch.where(mels >= min_log_mel, log_part, linear)


def mel_filterbank(
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: Literal["htk", "slaney"] = "htk",
    norm: Literal["slaney"] | None = None,
) -> Tensor:
    """Triangular mel filters ``[n_fft // 2 + 1, n_mels]``, computed in float64.

    ``scale="htk", norm=None`` is torchaudio's ``MelSpectrogram`` default (Vocos);
    ``scale="slaney", norm="slaney"`` is librosa's default (HiFi-GAN).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(
        float(_hz_to_mel(torch.tensor(f_min, dtype=torch.float64), scale)),
        float(_hz_to_mel(torch.tensor(f_max, dtype=torch.float64), scale)),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_points = _mel_to_hz(mel_points, scale)
    spacing = hz_points[1:] - hz_points[:-1]
    slopes = hz_points[None, :] - freqs[:, None]
    rising = -slopes[:, :-2] / spacing[:-1]
    falling = slopes[:, 2:] / spacing[1:]
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        filters = filters * (2.0 / (hz_points[2 : n_mels + 2] - hz_points[:n_mels]))[None, :]
    return filters


class StreamingLogMel(FramedModule):
    """Audio ``[B, 1, T]`` → log-mel frames ``[B, n_mels, F]``, streamed exactly.

    Frame ``f`` is the windowed FFT of padded samples ``[f·hop, f·hop + n_fft)``; the magnitude
    (``sqrt(re² + im² + magnitude_eps)``) goes through the filterbank and ``log(max(x, log_floor))``.

    Args:
        padding: samples of padding on each side (Vocos ``center``: ``n_fft // 2``; HiFi-GAN:
            ``(n_fft - hop) // 2``).
        pad_mode: ``"reflect"`` for both published models.
        filterbank: ``[n_fft // 2 + 1, n_mels]``.
        persistent: whether ``window`` and ``filterbank`` are part of the state dict (a
            checkpoint that carries them, like Vocos's, then supplies its own copies).
    """

    window: Tensor
    filterbank: Tensor

    def __init__(
        self,
        *,
        n_fft: int,
        hop_length: int,
        filterbank: Tensor,
        padding: tuple[int, int],
        pad_mode: PadMode = "reflect",
        log_floor: float = 1e-7,
        magnitude_eps: float = 0.0,
        persistent: bool = True,
    ) -> None:
        super().__init__(
            window=n_fft,
            stride=hop_length,
            padding=padding,
            pad_mode=pad_mode,
            pad_to_stride=False,
            out_channels=filterbank.shape[1],
        )
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.log_floor = log_floor
        self.magnitude_eps = magnitude_eps
        # Persistent when a checkpoint carries its own copies (Vocos), computed otherwise.
        self.register_buffer("window", hann_window(n_fft), persistent=persistent)
        self.register_buffer("filterbank", filterbank.to(torch.float32), persistent=persistent)

    @property
    def n_mels(self) -> int:
        return int(self.filterbank.shape[1])

    def _compute(self, windows: Tensor, n_out: int) -> Tensor:
        frames = windows[:, 0].unfold(-1, self.n_fft, self.hop_length)  # [B, n_out, n_fft]
        if _half(frames):  # FFTs run in float32 at least; the mel returns at the model's precision
            return self._compute(windows.float(), n_out).to(windows.dtype)
        spectrum = torch.fft.rfft(frames * self.window.to(frames.dtype), dim=-1)
        if self.magnitude_eps:
            magnitude = torch.sqrt(spectrum.real.square() + spectrum.imag.square() + self.magnitude_eps)
        else:
            magnitude = spectrum.abs()
        mel = magnitude @ self.filterbank.to(magnitude.dtype)  # [B, n_out, n_mels]
        return torch.log(torch.clamp(mel, min=self.log_floor)).transpose(1, 2)


#: A per-row counter as maths take it: a Python int when every row agrees, else the rows.
Ints = Union[int, RowInts]


def _rows(values: RowInts) -> Ints:
    """The rows' shared value as a Python int (cheap maths for the usual stream), else the rows
    themselves (not a copy)."""
    shared = common(values)
    return values if shared is None else shared


def _one(value: Ints, what: str) -> int:
    return value if isinstance(value, int) else uniform(value, what)


@dataclass
class ISTFTState(StreamState):
    signal: Tensor  # [B, L] overlap-added samples from uncropped position `released` on
    envelope: Tensor  # [B, L] overlap-added squared window, same positions
    released: RowInts  # uncropped positions already emitted (or cropped)
    frames: RowInts  # frames received

    free_rows = ("released", "frames")  # their phase: StreamingISTFT.state_phase


class StreamingISTFT(StreamingModule[ISTFTState]):
    """Complex spectra ``[B, n_fft // 2 + 1, F]`` → audio ``[B, 1, T]`` by windowed overlap-add,
    divided by the overlap-added squared window, streamed exactly.

    ``padding="center"`` is ``torch.istft(center=True)``: ``T = hop·(F - 1)``, ``n_fft // 2``
    cropped at each end. ``padding="same"`` is Vocos's custom ISTFT: ``T = hop·F``,
    ``(n_fft - hop) // 2`` cropped at each end. Position ``p`` is final once every frame whose
    window is non-zero at ``p`` has arrived; a Hann window's leading zero lets each frame
    release one sample more than its hop.

    Rows of one batch may be of different ages: past the start-up every row buffers, adds and
    releases the same amounts, so only those amounts must agree.
    """

    window: Tensor

    def __init__(self, n_fft: int, hop_length: int, *, padding: Literal["center", "same"] = "same") -> None:
        super().__init__()
        if padding not in ("center", "same"):
            raise ValueError(f"padding must be 'center' or 'same', got {padding!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = padding
        self.trim = n_fft // 2 if padding == "center" else (n_fft - hop_length) // 2
        self.register_buffer("window", hann_window(n_fft))
        self._zeros: tuple[tuple[int, int], int] | None = None

    def _leading_zeros(self) -> int:
        """Leading zeros of ``window``, recomputed only when the buffer changes (a checkpoint
        may carry its own)."""
        key = (self.window.data_ptr(), self.window._version)
        if self._zeros is None or self._zeros[0] != key:
            nonzero = torch.nonzero(self.window)
            self._zeros = (key, int(nonzero[0]) if len(nonzero) else self.n_fft)
        return self._zeros[1]

    def init_state(self, batch_size: int, like: Tensor) -> ISTFTState:
        return ISTFTState(
            signal=self.window.new_zeros(batch_size, 0),
            envelope=self.window.new_zeros(batch_size, 0),
            released=row_ints(batch_size),
            frames=row_ints(batch_size),
        )

    def state_phase(self, state: ISTFTState) -> Hashable:
        """Rows step together when their overlap-add offsets and start crops agree."""
        offsets = state.frames * self.hop_length - state.released
        crops = np.minimum(state.released, self.trim)
        return state.phase(), tuple(np.unique(offsets).tolist()), tuple(np.unique(crops).tolist())

    def _final(self, frames: Ints) -> Ints:
        """Uncropped positions no later frame can change, after ``frames`` frames (> 0)."""
        hop = self.hop_length
        by_zeros, by_window = frames * hop + self._leading_zeros(), (frames - 1) * hop + self.n_fft
        return min(by_zeros, by_window) if isinstance(by_zeros, int) else np.minimum(by_zeros, by_window)

    def step(self, spectrum: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, spectrum)
        n = spectrum.shape[-1]
        if n == 0:
            return state.signal.new_zeros(spectrum.shape[0], 1, 0)
        frames = torch.fft.irfft(spectrum, self.n_fft, dim=1, norm="backward").transpose(1, 2) * self.window
        frames = frames.to(self.window.dtype)  # a half-precision model's spectrum arrives in float32
        added = overlap_add(frames, self.hop_length)
        added_envelope = overlap_add(self.window.square().expand(1, n, -1), self.hop_length)
        received, released = _rows(state.frames), _rows(state.released)
        offset = _one(received * self.hop_length - released, "overlap-add offsets")
        if offset < 0:  # positions already released lie under the window's leading zeros
            added, added_envelope, offset = added[..., -offset:], added_envelope[..., -offset:], 0
        end = offset + added.shape[-1]
        state.signal = _extend(state.signal, end)
        state.envelope = _extend(state.envelope, end)
        state.signal[..., offset:end] += added
        state.envelope[..., offset:end] += added_envelope
        # Before advancing: `received` may be the rows' own array.
        count = _one(self._final(received + n) - released, "samples ready")
        advance(state.frames, n)
        return self._release(state, count)

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None or not uniform(state.frames > 0, "ends (some rows got no input)"):
            return None
        ends = (_rows(state.frames) - 1) * self.hop_length + self.n_fft - self.trim
        out = self._release(state, max(0, _one(ends - _rows(state.released), "samples left")))
        return out if out.shape[-1] else None

    def output_count(self, n_in: int) -> int:
        if n_in == 0:
            return 0
        return max(0, int(self._final(n_in)) - self.trim)

    def _release(self, state: ISTFTState, count: int) -> Tensor:
        signal = state.signal[..., :count] / state.envelope[..., :count]
        state.signal = state.signal[..., count:]
        state.envelope = state.envelope[..., count:]
        to_crop = self.trim - _rows(state.released)  # the start crop still due
        if isinstance(to_crop, int):
            crop = max(0, min(to_crop, count))
        else:
            crop = uniform(np.minimum(np.maximum(to_crop, 0), count), "start crops")
        advance(state.released, count)
        return signal[:, None, crop:]


def _half(x: Tensor) -> bool:
    return x.dtype in (torch.bfloat16, torch.float16)


def _extend(values: Tensor, length: int) -> Tensor:
    missing = length - values.shape[-1]
    if missing <= 0:
        return values
    return torch.cat([values, values.new_zeros(*values.shape[:-1], missing)], dim=-1)
