"""TTS playback: tokens arrive from a language model, audio goes to a sink as soon as it is final.

:class:`TokenPlayer` measures what a TTS user feels: **time to first audio** (from the first
token pushed to the first sample handed to the sink), the tokens that took, compute per push,
and while playing the **steady-state lag** (audio queued ahead of the speaker) and underruns.
:class:`ReplayedTokens` stands in for a language model: it replays a token list at a set rate
with jitter and bursts, deterministic for a seed.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
from torch import Tensor

from .base import TokenDecoder, TokenIds

if TYPE_CHECKING:
    from ..io.base import AudioSink

__all__ = ["TokenPlayer", "PlaybackMetrics", "ReplayedTokens"]


@dataclass(frozen=True)
class PlaybackMetrics:
    tokens: int
    audio_seconds: float
    ttfa_ms: float | None  # first token pushed -> first sample handed to the sink
    tokens_before_audio: int | None  # tokens pushed when the first audio came out
    compute_p50_ms: float
    compute_p99_ms: float
    steady_lag_ms: float | None  # mean audio queued ahead of the speaker while playing
    underruns: int  # after the prefill, device sinks only
    decoder_latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        ttfa = "-" if self.ttfa_ms is None else f"{self.ttfa_ms:.1f} ms after {self.tokens_before_audio} tokens"
        lag = "-" if self.steady_lag_ms is None else f"{self.steady_lag_ms:.0f} ms"
        return (
            f"time to first audio {ttfa}; {self.audio_seconds:.2f} s of audio from {self.tokens} tokens; "
            f"compute per push p50 {self.compute_p50_ms:.2f} ms, p99 {self.compute_p99_ms:.2f} ms; "
            f"steady lag {lag}; underruns {self.underruns}; decoder latency {self.decoder_latency_ms:.1f} ms"
        )


class TokenPlayer:
    """Feed ``decoder`` (a :class:`~codecstream.tokens.base.TokenDecoder`, e.g.
    :class:`OrpheusDecoder`) and write what it releases to ``sink`` (an
    :class:`~codecstream.io.base.AudioSink`, or None)."""

    def __init__(self, decoder: TokenDecoder, sink: "AudioSink | None" = None) -> None:
        self.decoder = decoder
        self.sink = sink
        self.tokens = 0
        self.samples = 0
        self.first_token_at: float | None = None
        self.first_audio_at: float | None = None
        self.tokens_before_audio: int | None = None
        self.compute_s: list[float] = []
        self._lag_s: list[float] = []
        self.chunks: list[np.ndarray] = []  # what was handed to the sink, for checks

    def _hand_over(self, audio: Tensor, started: float) -> None:
        samples = audio[0].T.detach().to("cpu").float().numpy()
        self.compute_s.append(time.perf_counter() - started)
        if not len(samples):
            return
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
            self.tokens_before_audio = self.tokens
        if self.sink is not None:
            if self.sink.playing:
                self._lag_s.append(self.sink.buffered_samples() / self.sink.sample_rate)
            self.sink.write(samples)
        self.chunks.append(samples)
        self.samples += len(samples)

    def push(self, tokens: TokenIds) -> None:
        started = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = started
        self.tokens += 1 if isinstance(tokens, int) else len(tokens)
        self._hand_over(self.decoder.push(tokens), started)

    def flush(self) -> None:
        self._hand_over(self.decoder.flush(), time.perf_counter())

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0, 1), np.float32)

    def metrics(self) -> PlaybackMetrics:
        rate = self.decoder.model.sample_rate
        compute = sorted(self.compute_s) or [0.0]
        ttfa = None if self.first_audio_at is None or self.first_token_at is None else 1000 * (self.first_audio_at - self.first_token_at)
        return PlaybackMetrics(
            tokens=self.tokens,
            audio_seconds=self.samples / rate,
            ttfa_ms=ttfa,
            tokens_before_audio=self.tokens_before_audio,
            compute_p50_ms=1000 * statistics.median(compute),
            compute_p99_ms=1000 * compute[min(len(compute) - 1, int(0.99 * len(compute)))],
            steady_lag_ms=1000 * statistics.fmean(self._lag_s) if self._lag_s else None,
            underruns=self.sink.underruns if self.sink is not None else 0,
            decoder_latency_ms=1000 * self.decoder.latency_samples / rate,
        )


class ReplayedTokens:
    """Tokens replayed like a language model generating them: ``rate`` tokens per second on
    average, each delayed by up to ``jitter_ms`` (uniform), in bursts of ``burst`` tokens.
    Iterating yields ``(due_time_s, tokens)`` relative to the start; :meth:`play` feeds a player
    in real time."""

    def __init__(self, tokens: Sequence[int], *, rate: float, jitter_ms: float = 0.0, burst: int = 1, seed: int = 0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.tokens, self.rate, self.jitter_ms, self.burst, self.seed = list(tokens), rate, jitter_ms, burst, seed

    def __iter__(self) -> Iterator[tuple[float, list[int]]]:
        rng = random.Random(self.seed)
        last = 0.0
        for start in range(0, len(self.tokens), self.burst):
            group = self.tokens[start : start + self.burst]
            due = (start + len(group)) / self.rate + rng.uniform(0, self.jitter_ms) / 1000
            last = max(last, due)  # jitter delays, never reorders
            yield last, group

    def play(self, player: TokenPlayer, *, flush: bool = True) -> None:
        started = time.monotonic()
        for due, group in self:
            delay = started + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            player.push(group)
        if flush:
            player.flush()
