"""Algorithmic latency, derived from how many frames a model releases after n inputs.

The two figures every stream reports, in samples of audio at the model's rate:

``latency``
    The steady-state delay. Encoder: code frame ``j`` (which covers samples
    ``[j·hop, (j+1)·hop)``) is returned once ``j·hop + latency`` samples have been pushed.
    Decoder: ``latency = max_t (g(t)·hop − t)``, where ``g(t)`` is the index of the code
    frame whose push releases output sample ``t``: frame ``g`` (stamped at ``g·hop``) brings
    every sample up to ``g·hop − latency``. An encoder feeding a decoder therefore delays
    audio by ``encoder.latency_samples + decoder.latency_samples`` samples end to end.

``startup_latency``
    The same delay for the very first output. It exceeds ``latency`` only where the offline
    model mirrors future samples into its left edge (EnCodec's reflect padding): the first
    code frame then waits for the samples it mirrors.

Both are computed from the layer graph's ``output_count``, never typed in by hand, and the
tests check them against what the streams really release. Every search here is a bisection
over a monotone count plus a fixed horizon of frames, so its cost does not grow with the
latency it finds.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["encoder_latency", "decoder_latency", "chain_startup_latency"]

_HORIZON_FRAMES = 64  # frames examined after start-up; every model here is periodic well within it
_SEARCH_LIMIT = 1 << 40


def _first_input_releasing(count: Callable[[int], int], frames: int) -> int:
    """Smallest input amount after which the monotone ``count`` reaches ``frames``."""
    if count(0) >= frames:
        return 0
    high = 1
    while count(high) < frames:
        high *= 2
        if high > _SEARCH_LIMIT:
            raise RuntimeError("the model never releases output: check its output_count")
    low = high // 2  # invariant: count(low) < frames <= count(high)
    while high - low > 1:
        mid = (low + high) // 2
        if count(mid) >= frames:
            high = mid
        else:
            low = mid
    return high


def encoder_latency(count: Callable[[int], int], hop: int) -> tuple[int, int]:
    """``(latency, startup_latency)`` of an encoder; ``count(n)``: code frames released after
    ``n`` samples."""
    startup = _first_input_releasing(count, 1)
    first_steady = count(startup)
    latency = max(
        _first_input_releasing(count, j + 1) - j * hop
        for j in range(first_steady, first_steady + _HORIZON_FRAMES)
    )
    return latency, startup


def decoder_latency(samples_after: Callable[[int], int], hop: int) -> tuple[int, int]:
    """``(latency, startup_latency)`` of a decoder; ``samples_after(f)``: samples released
    after ``f`` frames."""
    # A bisection, never a walk over frames: a model (or a windowed stream's options) may hold
    # its first output back for a very long time.
    first = max(1, _first_input_releasing(samples_after, 1))
    startup = (first - 1) * hop  # frame index first-1 releases sample 0
    latency = max(
        g * hop - samples_after(g)
        for g in range(first, first + _HORIZON_FRAMES)
        if samples_after(g + 1) > samples_after(g)
    )
    return latency, startup


def chain_startup_latency(frames_after: Callable[[int], int], samples_after: Callable[[int], int]) -> int:
    """Input samples an encoder → decoder chain needs before its first output sample (the
    two start-ups overlap, so this is not their sum)."""
    return _first_input_releasing(lambda n: samples_after(frames_after(n)), 1)
