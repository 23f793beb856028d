"""``codecstream bench``: offline and streaming speed of a model, measured in one run.

Every figure that is compared is measured in the same process on the same signal: our
offline encode+decode, our streaming encode+decode at several chunk sizes (total real-time
factor and per-chunk compute p50/p99), and, where the model's reference package is
installed, its offline encode+decode. Machines are noisy, so read the ratios, not the seconds.
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from ..latency import chain_startup_latency
from ..registry import Reference, get_spec, load
from ..signals import speech_like
from ..streams import DecoderStream
from ..windowed import WindowedDecoderStream

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["run_benchmark", "BenchResult", "plot_streams"]


@dataclass
class StreamingFigures:
    chunk_ms: float
    chunks: int
    total_s: float
    rtf: float
    chunk_p50_ms: float
    chunk_p99_ms: float
    chunk_max_ms: float
    over_offline: float  # streaming compute / offline compute, same signal
    max_abs_error: float  # |streamed - offline| (0 up to rounding for exact streams)
    mode: str = "exact"  # or "windowed R=.. L=.. B=.." for models that cannot stream exactly


@dataclass
class BenchResult:
    model: str
    weights: str
    device: str
    dtype: str
    torch_threads: int
    machine: str
    seconds: float
    sample_rate: int
    options: dict[str, Any]
    latency: dict[str, float | None]
    offline: dict[str, float]
    streaming: list[StreamingFigures] = field(default_factory=list)  # encoder -> decoder
    streaming_decode: list[StreamingFigures] = field(default_factory=list)  # decoder alone
    reference: dict[str, Any] = field(default_factory=dict)
    orpheus: dict[str, Any] = field(default_factory=dict)  # SNAC 24 kHz: ours vs Orpheus's sliding window
    streams: list[dict[str, Any]] = field(default_factory=list)  # N streams batched in stream groups

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def print(self) -> None:
        print(f"model {self.model} ({self.weights}), {self.device} {self.dtype}, {self.torch_threads} threads, {self.machine}")
        print(f"signal {self.seconds:.1f} s at {self.sample_rate} Hz, options {self.options or '-'}")
        lat = self.latency
        encoder = "offline only" if lat.get("encoder_ms") is None else f"{lat['encoder_ms']:.1f} ms"
        first = "" if lat.get("startup_ms") is None else f", first output {lat['startup_ms']:.1f} ms"
        print(f"latency: encoder {encoder}, decoder {lat['decoder_ms']:.1f} ms{first}")
        off = self.offline
        print(
            f"offline: encode {off['encode_s']:.3f} s, decode {off['decode_s']:.3f} s, "
            f"roundtrip {off['roundtrip_s']:.3f} s (RTF {off['rtf']:.3f})"
        )
        for title, rows in (("streaming encode->decode", self.streaming), ("streaming decode", self.streaming_decode)):
            if not rows:
                print(f"{title}: not available (the encoder needs the whole signal)")
                continue
            print(f"{title} ({rows[0].mode}):")
            print(f"{'chunk':>8} {'chunks':>7} {'RTF':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'x offline':>10} {'max err':>9}")
            for s in rows:
                print(
                    f"{s.chunk_ms:>6.0f}ms {s.chunks:>7d} {s.rtf:>7.3f} {s.chunk_p50_ms:>8.2f} "
                    f"{s.chunk_p99_ms:>8.2f} {s.chunk_max_ms:>8.2f} {s.over_offline:>10.2f} {s.max_abs_error:>9.2e}"
                )
        if self.streams:
            path = self.streams[0]["path"]
            print(f"batched streams ({path}, {self.streams[0]['block_ms']:.1f} ms blocks, one tick per block):")
            print(f"{'streams':>8} {'s/s per stream':>15} {'x offline':>10} {'tick p50 ms':>12} {'tick p99 ms':>12} {'real time':>10}")
            for row in self.streams:
                print(
                    f"{row['streams']:>8d} {row['per_stream_s_per_s']:>15.4f} {row['over_offline']:>10.2f} "
                    f"{row['tick_p50_ms']:>12.2f} {row['tick_p99_ms']:>12.2f} {'yes' if row['realtime'] else 'no':>10}"
                )
        ref = self.reference
        if "roundtrip_s" in ref:
            print(
                f"reference {ref['package']}: roundtrip {ref['roundtrip_s']:.3f} s, decode {ref['decode_s']:.3f} s; "
                f"ours/reference offline {ref['ours_over_reference']:.2f} (decode {ref['ours_decode_over_reference']:.2f}); "
                f"max |ours - reference| {ref['max_abs_diff']:.2e}"
            )
            if "stream_decode_20ms_over_reference_decode" in ref:
                print(f"our streaming decode at 20 ms / reference offline decode: {ref['stream_decode_20ms_over_reference_decode']:.2f}")
        elif ref:
            print(f"reference: {ref.get('skipped')}")
        if self.orpheus:
            o = self.orpheus
            print(f"Orpheus tokens ({o['tokens']} tokens, {o['audio_s']:.1f} s), noise off; TTFA with tokens at the real-time rate:")
            print(f"{'decoder':>16} {'compute/s':>10} {'max err':>9} {'lookahead':>10} {'1st audio':>10} {'TTFA':>9} {'emitted':>8}")
            for label, key in (("ours, per token", "ours_per_token"), ("ours, per frame", "ours_per_frame"), ("28-token window", "window_baseline")):
                d = o[key]
                print(
                    f"{label:>16} {d['compute_per_audio_s']:>9.3f}s {d['max_error']:>9.2e} {d['lookahead_ms']:>8.1f}ms "
                    f"{d['first_audio_after_tokens']:>6} tok {d['ttfa_ms']:>7.1f}ms {d['emitted_s']:>7.2f}s"
                )
            print(
                f"window decoded by {o['window_baseline']['decoded_by']}; baseline compute / ours: "
                f"{o['compute_ratio_baseline_over_ours_per_token']:.2f}x per token, "
                f"{o['compute_ratio_baseline_over_ours_per_frame']:.2f}x per frame"
            )


def plot_streams(result: BenchResult, path: Path) -> None:
    """Per-stream compute per audio second against the number of batched streams, with the
    offline cost and the real-time line (needs matplotlib, the ``report`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [row["streams"] for row in result.streams]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(counts, [row["per_stream_s_per_s"] for row in result.streams], "o-", label="per stream, batched")
    offline = result.offline["roundtrip_s"] / result.seconds if result.streams[0]["path"] == "encode->decode" else result.offline["decode_s"] / result.seconds
    axes.axhline(offline, color="gray", linestyle="--", label="offline, one stream")
    axes.plot(counts, [1.0 / c for c in counts], ":", color="red", label="real-time budget per stream")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("streams in one group")
    axes.set_ylabel("compute s per audio s, per stream")
    axes.set_title(f"{result.model}, {result.streams[0]['path']}, {result.dtype}, {result.torch_threads} threads")
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _median_time(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    run()  # warm-up: allocator, caches, lazy init
    times, result = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def run_benchmark(
    name: str,
    *,
    weights: str | None = "random",
    seconds: float = 10.0,
    chunk_ms: Sequence[float] = (10.0, 20.0, 40.0, 80.0),
    bandwidth: float | None = None,
    repeats: int = 3,
    reference: bool = True,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    streams: Sequence[int] = (),
    tick_ms: float = 20.0,
) -> BenchResult:
    model = load(name, weights, device=device, dtype=dtype)
    options: dict[str, Any] = {} if bandwidth is None else {"bandwidth": bandwidth}
    audio = speech_like(seconds, model.encoder_sample_rate, model.channels).to(device=device, dtype=dtype)

    with torch.inference_mode():
        encode_s, codes = _median_time(lambda: model.encode(audio, **options), repeats)
        decode_s, decoded = _median_time(lambda: model.decode(codes), repeats)
    roundtrip_s = encode_s + decode_s

    encoder_probe = model.encoder_stream(1, **options) if model.streaming_encoder else None
    decoder_probe = _decoder(model, WINDOWED_LOOKAHEAD_FRAMES)
    startup = chain_startup_latency(model.encoder_frames, model.decoder_samples) if encoder_probe and model.exact_decoder else None
    result = BenchResult(
        model=name,
        weights=str(weights),
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        torch_threads=torch.get_num_threads(),
        machine=f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
        seconds=seconds,
        sample_rate=model.sample_rate,
        options=options,
        latency={
            "encoder_samples": None if encoder_probe is None else encoder_probe.latency_samples,
            "decoder_samples": decoder_probe.latency_samples,
            "encoder_ms": None if encoder_probe is None else encoder_probe.latency_ms,
            "decoder_ms": decoder_probe.latency_ms,
            "startup_ms": None if startup is None else 1000 * startup / model.sample_rate,
        },
        offline={"encode_s": encode_s, "decode_s": decode_s, "roundtrip_s": roundtrip_s, "rtf": roundtrip_s / seconds},
    )

    for ms in chunk_ms:
        if encoder_probe is not None:
            result.streaming.append(_stream_roundtrip(model, audio, ms, options, roundtrip_s, decoded))
        result.streaming_decode.append(_stream_decode(model, codes, ms, decode_s, decoded))

    for count in streams:
        result.streams.append(_batched_figures(model, audio, count, options, roundtrip_s if encoder_probe is not None else decode_s, tick_ms, seconds))
    if reference:
        result.reference = _reference_figures(name, model, audio, codes, options, decoded, repeats, result)
    if _speaks_orpheus(model):
        from .orpheus_baseline import compare_with_window_baseline

        window_decode, package = None, "codecstream (offline, noise off)"
        if reference:  # Orpheus decodes its windows with the snac package: time that when installed
            try:
                from ..models.snac.codec import SnacCodec
                from ..models.snac.reference import quiet_reference_decoder

                if isinstance(model, SnacCodec):
                    window_decode, package = quiet_reference_decoder(model), "snac (SNAC.decode, noise off)"
            except ImportError:
                pass
        result.orpheus = compare_with_window_baseline(model, codes, window_decode=window_decode, package=package)
    return result


def _batched_figures(model: "Codec", audio: torch.Tensor, count: int, options: dict[str, Any], offline_s: float, tick_ms: float, seconds: float) -> dict[str, Any]:
    """``count`` streams of ``audio`` through stream groups (encoder then decoder, or the
    decoder alone), one block each per tick as a real-time server runs them."""
    from ..groups import StreamGroup
    from ..runtime.scheduler import GroupScheduler

    block_frames = GroupScheduler(tick_ms).block_frames(model)
    encode = model.has_encoder and model.streaming_encoder
    decoder = StreamGroup(model, "decoder", block_frames=block_frames)
    encoder = StreamGroup(model, "encoder", block_frames=block_frames, options=options) if encode else None
    with torch.inference_mode():
        codes = None if encode else model.encode(audio, **options)
    decoders = [decoder.open() for _ in range(count)]
    encoders = [encoder.open() for _ in range(count)] if encoder is not None else []
    block_samples = block_frames * model.hop_length
    frames_total = model.num_frames(codes) if codes is not None else 0
    ticks_ms: list[float] = []
    position = 0
    while True:
        if encoder is not None:
            if position + block_samples > audio.shape[-1]:
                break
            for stream in encoders:
                stream.push(audio[..., position : position + block_samples])
        else:
            if position + block_frames > frames_total:
                break
            for stream in decoders:
                stream.push(model.slice_codes(codes, position, position + block_frames))
        started = time.perf_counter()
        if encoder is not None:
            encoder.tick()
            for source, sink in zip(encoders, decoders):
                sink.push(source.pull())
        decoder.tick()
        for stream in decoders:
            stream.pull()
        ticks_ms.append(1000 * (time.perf_counter() - started))
        position += block_samples if encoder is not None else block_frames
    for stream in [*encoders, *decoders]:
        stream.close()
    steady = ticks_ms[len(ticks_ms) // 5 :] or ticks_ms  # the first ticks start the streams
    block_s = block_frames * model.hop_length / model.sample_rate
    per_stream = statistics.mean(steady) / 1000 / block_s / count
    return {
        "streams": count,
        "path": "encode->decode" if encoder is not None else "decode",
        "block_ms": 1000 * block_s,
        "per_stream_s_per_s": per_stream,
        "over_offline": per_stream / (offline_s / seconds),
        "tick_p50_ms": _percentile(steady, 50),
        "tick_p99_ms": _percentile(steady, 99),
        "realtime": _percentile(steady, 99) < 1000 * block_s,
    }


#: Lookahead of the windowed streams benchmarked for models that cannot stream exactly
#: (NeuTTS streams NeuCodec with 5 frames, 100 ms).
WINDOWED_LOOKAHEAD_FRAMES = 5


def _decoder(model: "Codec", frames_per_chunk: int) -> DecoderStream | WindowedDecoderStream:
    """The model's exact decoder stream, or a windowed one (lookahead 5 frames, blocks of one
    chunk, the model's default context) when it has none."""
    if model.exact_decoder:
        return model.decoder_stream(1)
    return model.decoder_stream(1, mode="windowed", lookahead_frames=WINDOWED_LOOKAHEAD_FRAMES, block_frames=max(1, frames_per_chunk))


def _error(parts: list[torch.Tensor], offline: torch.Tensor) -> float:
    streamed = torch.cat(parts, dim=-1)
    n = min(streamed.shape[-1], offline.shape[-1])
    return float((streamed[..., :n] - offline[..., :n]).abs().max()) if n else 0.0


def _speaks_orpheus(model: "Codec") -> bool:
    config = getattr(model, "config", None)
    return getattr(config, "vq_strides", None) == (4, 2, 1) and getattr(config, "codebook_size", None) == 4096


def _figures(
    ms: float, per_chunk: list[float], tail_s: float, seconds: float, offline_s: float, error: float, mode: str = "exact"
) -> StreamingFigures:
    total = sum(per_chunk) + tail_s
    return StreamingFigures(
        chunk_ms=ms,
        chunks=len(per_chunk),
        total_s=total,
        rtf=total / seconds,
        chunk_p50_ms=1000 * statistics.median(per_chunk),
        chunk_p99_ms=1000 * _percentile(per_chunk, 99),
        chunk_max_ms=1000 * max(per_chunk),
        over_offline=total / offline_s,
        max_abs_error=error,
        mode=mode,
    )


def _stream_roundtrip(
    model: "Codec", audio: torch.Tensor, ms: float, options: dict[str, Any], offline_s: float, offline: torch.Tensor
) -> StreamingFigures:
    """Audio pushed ``ms`` at a time through an encoder stream feeding a decoder stream."""
    chunk = max(1, round(ms * model.encoder_sample_rate / 1000))
    frames = max(1, round(ms * model.frame_rate / 1000))
    encoder, decoder = model.encoder_stream(1, **options), _decoder(model, frames)
    per_chunk: list[float] = []
    out: list[torch.Tensor] = []
    for start in range(0, audio.shape[-1], chunk):
        began = time.perf_counter()
        out.append(decoder.push(encoder.push(audio[..., start : start + chunk])))
        per_chunk.append(time.perf_counter() - began)
    began = time.perf_counter()
    out += [decoder.push(encoder.flush()), decoder.flush()]
    seconds = audio.shape[-1] / model.encoder_sample_rate
    return _figures(ms, per_chunk, time.perf_counter() - began, seconds, offline_s, _error(out, offline), _mode(decoder))


def _mode(stream: DecoderStream | WindowedDecoderStream) -> str:
    if isinstance(stream, WindowedDecoderStream):
        return f"windowed R={stream.lookahead_frames} L={stream.context_frames} B={stream.block_frames}"
    return "exact"


def _stream_decode(model: "Codec", codes: Any, ms: float, offline_s: float, offline: torch.Tensor) -> StreamingFigures:
    """Codes pushed as they would arrive in ``ms`` chunks (frame counts alternate when ``ms``
    is not a whole number of frames), through a decoder stream alone."""
    frames = model.num_frames(codes)
    per_chunk_frames = ms * model.frame_rate / 1000
    chunks = math.ceil(frames / per_chunk_frames)
    bounds = sorted({min(frames, round(k * per_chunk_frames)) for k in range(1, chunks + 1)} | {frames})
    decoder = _decoder(model, max(1, round(per_chunk_frames)))
    per_chunk: list[float] = []
    out: list[torch.Tensor] = []
    start = 0
    for end in bounds:
        if end <= start:
            continue
        began = time.perf_counter()
        out.append(decoder.push(model.slice_codes(codes, start, end)))
        per_chunk.append(time.perf_counter() - began)
        start = end
    began = time.perf_counter()
    out.append(decoder.flush())
    seconds = frames * model.hop_length / model.sample_rate
    return _figures(ms, per_chunk, time.perf_counter() - began, seconds, offline_s, _error(out, offline), _mode(decoder))


def resolve_reference(reference: str | Callable[..., Reference]) -> Callable[..., Reference]:
    """A :class:`~codecstream.ModelSpec`'s ``reference``: the function itself, or the one a
    ``"module:function"`` string names, imported now (reference modules import and may patch
    upstream packages, so nothing but the benchmark imports them)."""
    if callable(reference):
        return reference
    module, _, function = reference.partition(":")
    resolved: Callable[..., Reference] = getattr(importlib.import_module(module), function)
    return resolved


def _reference_figures(
    name: str, model: "Codec", audio: torch.Tensor, codes: Any, options: dict[str, Any], decoded: torch.Tensor,
    repeats: int, result: "BenchResult",
) -> dict[str, Any]:
    spec = get_spec(name)
    if spec.reference is None:
        return {"skipped": f"no reference implementation is wired for {name}"}
    try:
        reference = resolve_reference(spec.reference)(model, audio, codes, options)
    except ImportError as exc:
        return {"skipped": f"reference package not installed ({exc})"}
    with torch.inference_mode():
        roundtrip_s, _ = _median_time(reference.roundtrip, repeats)
        decode_s, ref_decoded = _median_time(reference.decode, repeats)
    ref_decoded = ref_decoded.reshape(decoded.shape[0], -1, ref_decoded.shape[-1]).to(decoded)
    n = min(ref_decoded.shape[-1], decoded.shape[-1])
    figures: dict[str, Any] = {
        "package": reference.package,
        "roundtrip_s": roundtrip_s,
        "decode_s": decode_s,
        "rtf": roundtrip_s / result.seconds,
        "ours_over_reference": result.offline["roundtrip_s"] / roundtrip_s,
        "ours_decode_over_reference": result.offline["decode_s"] / decode_s,
        "max_abs_diff": float((ref_decoded[..., :n] - decoded[..., :n]).abs().max()),
    }
    twenty = [s for s in result.streaming_decode if s.chunk_ms == 20]
    if twenty:
        figures["stream_decode_20ms_over_reference_decode"] = twenty[0].total_s / decode_s
    return figures
