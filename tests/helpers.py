"""Shared test helpers: chunkings, stream drivers, latency checks."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from typing import Any, Callable, Iterator, Sequence

import torch

PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97]


def chunk_sizes(total: int, kind: str, seed: int = 0, max_size: int = 997) -> list[int]:
    """Chunk lengths covering ``total``: ``ones``, ``primes`` (cycling), ``random`` or ``whole``."""
    rng = random.Random(seed)
    sizes: list[int] = []
    covered = 0
    index = 0
    while covered < total:
        if kind == "ones":
            size = 1
        elif kind == "primes":
            size = PRIMES[index % len(PRIMES)]
        elif kind == "random":
            size = rng.randint(1, max_size)
        elif kind == "whole":
            size = total
        else:
            raise ValueError(kind)
        size = min(size, total - covered)
        sizes.append(size)
        covered += size
        index += 1
    return sizes


CHUNKINGS = ["ones", "primes", "random", "whole"]


def split(x: torch.Tensor, sizes: Sequence[int]) -> Iterator[torch.Tensor]:
    start = 0
    for size in sizes:
        yield x[..., start : start + size]
        start += size


def stream_all(stream: Any, x: torch.Tensor, sizes: Sequence[int], concat: Callable[[list[Any]], Any] | None = None) -> Any:
    parts = [stream.push(chunk) for chunk in split(x, sizes)]
    parts.append(stream.flush())
    if concat is not None:
        return concat(parts)
    return torch.cat(parts, dim=-1)


def stream_time_major(stream: Any, x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Push ``[B, T, C]`` ``x`` in ``sizes`` steps along dim 1 (the ``get_voco`` layout), then flush."""
    parts, start = [], 0
    for size in sizes:
        parts.append(stream.push(x[:, start : start + size]))
        start += size
    parts.append(stream.flush())
    return torch.cat(parts, dim=1)


def max_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max().clamp_min(1e-12)
    return float((a - b).abs().max() / scale)


def encoder_release_points(model: Any, n_samples: int, **options: Any) -> list[int]:
    """For each code frame, the input sample count at which an encoder stream fed one sample
    at a time first returns it."""
    stream = model.encoder_stream(1, **options)
    silence = torch.zeros(1, model.channels, 1, dtype=model.dtype)
    released: list[int] = []
    for n in range(1, n_samples + 1):
        frames = model.num_frames(stream.push(silence))
        released += [n] * frames
    return released


def decoder_release_counts(model: Any, codes: Any) -> list[int]:
    """Total samples returned by a decoder stream after each pushed frame."""
    stream = model.decoder_stream(1)
    total, counts = 0, []
    for f in range(model.num_frames(codes)):
        total += stream.push(model.slice_codes(codes, f, f + 1)).shape[-1]
        counts.append(total)
    return counts


def depends_on(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, out_index: int | slice, inputs: slice) -> bool:
    """Whether output ``out_index`` (a sample/frame, or a slice of them) of ``network(x)`` depends on ``x[..., inputs]``,
    read from the gradient (exact even where the influence is far below rounding noise)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = network(x)
        (grad,) = torch.autograd.grad(y[..., out_index].sum(), x, allow_unused=True)
    return grad is not None and bool(grad[..., inputs].abs().max() > 0)


@contextlib.contextmanager
def running_server(config: Any) -> Iterator[Any]:
    """A real ``codecstream.server`` on its own event-loop thread, with its compute worker on
    another, for as long as the ``with`` block runs."""
    from codecstream.server.app import ComputeWorker, Server

    worker, stop = ComputeWorker(), threading.Event()
    server = Server(config, worker)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    threading.Thread(target=worker.run_forever, args=(stop,), daemon=True).start()
    if not server.ready.wait(120):
        raise RuntimeError("the server did not start within 120 s")
    try:
        yield server
    finally:
        server.stop()
        stop.set()
        thread.join(timeout=10)
