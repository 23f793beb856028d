"""Warm-up at load: pay a model's first-call costs before the first user does.

The first stream of a process pays for lazy initialisation (kernel selection per shape, the
allocator's first pools, a model's first noise tables): seconds for some models, which would
land on the first session's time to first audio. :func:`warm_up` runs the model's streams the
way sessions do (small chunks, one row and a batch of rows, encoder and decoder) on silence
and a test tone, and keeps nothing.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from .groups import StreamGroup, group_unit_frames

if TYPE_CHECKING:
    from .plugin import Codec

__all__ = ["warm_up"]


def warm_up(model: "Codec", *, seconds: float = 0.5, batch_sizes: tuple[int, ...] = (1, 4)) -> float:
    """Run ``model``'s streams on ``seconds`` of audio per batch size, in 20 ms chunks and in
    group blocks; returns the wall time it took (seconds)."""
    started = time.perf_counter()
    samples = max(1, int(seconds * model.encoder_sample_rate))
    t = torch.arange(samples, dtype=torch.float64) / model.encoder_sample_rate
    tone = (0.1 * torch.sin(2 * math.pi * 220.0 * t)).to(model.dtype).to(model.device)
    chunk = max(1, model.encoder_sample_rate // 50)
    streams_encode = model.has_encoder and model.streaming_encoder
    with torch.inference_mode():
        for rows in batch_sizes:
            audio = tone.expand(rows, model.channels, samples).contiguous()
            if streams_encode:
                encoder = model.encoder_stream(rows)
                parts = [encoder.push(audio[..., i : i + chunk]) for i in range(0, samples, chunk)]
                codes = model.concat_codes([*parts, encoder.flush()])
            elif model.has_encoder:
                codes = model.encode(audio)
            else:
                return time.perf_counter() - started
            if model.exact_decoder:
                decoder = model.decoder_stream(rows)
                frames = model.num_frames(codes)
                step = group_unit_frames(model)
                for start in range(0, frames, step):
                    decoder.push(model.slice_codes(codes, start, min(frames, start + step)))
                decoder.flush()
            else:
                model.decode(codes)
        if streams_encode and model.exact_decoder:  # the group path: select, merge, assign
            encoders = StreamGroup(model, "encoder")
            members = [encoders.open() for _ in range(2)]
            for member in members:
                member.push(tone[None, None].expand(1, model.channels, samples).contiguous())
            encoders.run()
            for member in members:
                member.flush()
    return time.perf_counter() - started
