"""The ``codecstream`` command line.

    codecstream loopback                      # microphone -> HiFi-GAN -> speaker, live
    codecstream list
    codecstream encode IN.wav OUT.codes --model encodec-24khz --bandwidth 6
    codecstream decode IN.codes OUT.wav
    codecstream roundtrip IN.wav OUT.wav --model encodec-24khz --chunk-ms 20
    codecstream bench --model encodec-24khz --weights random
    codecstream latency-report --model hifigan-universal

Files are processed through the same streams a live application uses, ``--chunk-ms`` at a
time; the output is identical whatever the chunk size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from ..errors import CodecStreamError

if TYPE_CHECKING:
    from ..plugin import Codec
    from ..streams import EncoderStream

__all__ = ["main", "build_parser"]


class Progress:
    """A one-line progress bar on stderr, shown for long inputs (or when forced)."""

    def __init__(self, total_seconds: float, *, enabled: bool) -> None:
        self.total = max(total_seconds, 1e-9)
        self.enabled = enabled
        self._last_draw = 0.0

    def update(self, done_seconds: float, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = min(done_seconds / self.total, 1.0)
        filled = int(30 * fraction)
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r[{bar}] {100 * fraction:5.1f}%  {done_seconds:7.1f}/{self.total:.1f} s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _chunks(length: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, length, size):
        yield start, min(start + size, length)


def _add_model_options(parser: argparse.ArgumentParser, *, model_required: bool = False) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=model_required, help="registered model name (see `codecstream list`)")
    group.add_argument(
        "--weights",
        default=None,
        help="checkpoint file or directory, a hub id, or 'random' (default: the published weights)",
    )
    group.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    group.add_argument("--float64", action="store_true", help="run in float64 instead of float32")


def _add_stream_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("streaming")
    group.add_argument("--chunk-ms", type=float, default=1000.0, help="push size in milliseconds (default: 1000)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="show a progress bar (default: on a terminal for inputs over 10 s)")


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input audio")
    group.add_argument("--resample", action="store_true", help="resample the file to the model rate (soxr)")
    group.add_argument("--mix", action="store_true", help="down-mix or duplicate channels to fit the model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codecstream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the available models")

    encode = sub.add_parser("encode", help="audio file -> codes file")
    encode.add_argument("input", type=Path)
    encode.add_argument("output", type=Path)
    _add_model_options(encode, model_required=True)
    encode.add_argument("--bandwidth", type=float, default=None, help="kbps, for models that offer several")
    _add_stream_options(encode)
    _add_input_options(encode)

    decode = sub.add_parser("decode", help="codes file -> audio file")
    decode.add_argument("input", type=Path)
    decode.add_argument("output", type=Path)
    _add_model_options(decode)
    _add_stream_options(decode)

    roundtrip = sub.add_parser("roundtrip", help="audio file -> codes -> audio file, streamed")
    roundtrip.add_argument("input", type=Path)
    roundtrip.add_argument("output", type=Path)
    _add_model_options(roundtrip, model_required=True)
    roundtrip.add_argument("--bandwidth", type=float, default=None, help="kbps, for models that offer several")
    _add_stream_options(roundtrip)
    _add_input_options(roundtrip)

    bench = sub.add_parser("bench", help="measure offline and streaming speed (and the reference package's)")
    _add_model_options(bench, model_required=True)
    bench.add_argument("--bandwidth", type=float, default=None, help="kbps, for models that offer several")
    bench.add_argument("--seconds", type=float, default=10.0, help="length of the test signal (default: 10)")
    bench.add_argument("--chunk-ms", type=float, nargs="+", default=[10.0, 20.0, 40.0, 80.0], help="streaming chunk sizes")
    bench.add_argument("--repeats", type=int, default=3, help="offline runs to take the median of (default: 3)")
    bench.add_argument("--json", type=Path, default=Path("bench-results") / "bench.json", help="where to write the results")
    bench.add_argument("--no-reference", action="store_true", help="skip the reference package")
    bench.add_argument("--streams", type=int, nargs="*", default=[], help="also run N streams batched in stream groups, e.g. 1 4 16 64")
    bench.add_argument("--bfloat16", action="store_true", help="run in bfloat16 (reduced precision; faster on CPUs with AVX-512 BF16)")
    bench.add_argument("--plot", type=Path, default=None, help="with --streams: write a plot of per-stream compute against streams here (PNG)")

    loop = sub.add_parser("loopback", help="microphone (or file) -> model -> speaker (or file), in real time")
    loop.add_argument("--model", default="hifigan-universal", help="model to run (default: HiFi-GAN resynthesis with its real weights)")
    loop.add_argument("--weights", default=None, help="checkpoint (default: the published weights)")
    loop.add_argument("--backend", choices=["sounddevice", "pyaudio"], default="sounddevice")
    loop.add_argument("--input-device", default=None, help="input device name or index (default: the system's)")
    loop.add_argument("--output-device", default=None, help="output device name or index (default: the system's)")
    loop.add_argument("--input", type=Path, default=None, help="read this audio file instead of a device")
    loop.add_argument("--output", type=Path, default=None, help="write this WAV file instead of playing")
    loop.add_argument("--block-ms", type=float, default=80.0, help="processing block, rounded to model hops (default: 80)")
    loop.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until the input ends or Ctrl-C)")
    loop.add_argument("--realtime", action="store_true", help="pace --input in real time (default: as fast as possible)")
    loop.add_argument("--save-input", type=Path, default=None, help="also write what the model heard to this WAV file")
    loop.add_argument("--json", type=Path, default=None, help="write the final metrics here")
    loop.add_argument("--quiet", action="store_true", help="no live status line")

    serve = sub.add_parser("serve", help="WebSocket server with a browser client at / (binds 127.0.0.1)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; any other needs --token)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--model", default="hifigan-universal", help="the default model of sessions (loaded at start)")
    serve.add_argument("--models", nargs="+", default=[], help="more models to serve (loaded at start); sessions may ask only for served models")
    serve.add_argument("--weights", action="append", default=[], metavar="MODEL=WEIGHTS", help="weights per model, e.g. encodec-24khz=random")
    serve.add_argument("--load-on-request", action="store_true", help="also load, when a client asks, models given --weights but not served")
    serve.add_argument("--max-sessions", type=int, default=32)
    serve.add_argument("--max-message-bytes", type=int, default=256 * 1024, help="largest WebSocket message, either way (default 256 KiB)")
    serve.add_argument("--max-message-ms", type=float, default=1000.0, help="most audio (or codes) one message may carry, ms (default 1000)")
    serve.add_argument("--idle-timeout", type=float, default=30.0, help="seconds without a message before a session is closed")
    serve.add_argument("--hello-timeout", type=float, default=5.0, help="seconds a new connection has to send its hello")
    serve.add_argument("--token", default=os.environ.get("CODECSTREAM_TOKEN"), help="require this bearer token (Authorization header or ?token=); default: $CODECSTREAM_TOKEN")
    serve.add_argument("--allow-origin", action="append", default=None, help="browser Origin allowed besides this server's own page (repeatable; '*': any)")
    serve.add_argument("--compute-threads", type=int, default=None, help="torch threads for model compute (default: all cores but one, left to the network)")
    serve.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"], help="model precision (bfloat16: faster on CPUs with AVX-512 BF16; its error against float32 is in the README)")
    serve.add_argument("--device", default="cpu", help="where the models run (cpu, cuda)")
    serve.add_argument("--batching", action="store_true", help="sessions of one model and options share one forward pass per tick (default: each session computed alone)")
    serve.add_argument("--tick-ms", type=float, default=20.0, help="with batching: the longest a block waits for its tick, ms (default 20)")
    serve.add_argument("--no-warm-up", action="store_true", help="skip running each model once at load (the first session then pays its first-call cost)")
    serve.add_argument("--record-dir", type=Path, default=None, help="write each session's input and output audio here (files readable by you only)")
    serve.add_argument("--record-max-mb", type=float, default=64.0, help="recording per session and direction, MB (default 64)")
    ray = serve.add_argument_group("Ray Serve (pip install 'codecstream[ray]')")
    ray.add_argument("--ray", action="store_true", help="serve as a Ray Serve application: a gateway and --replicas model replicas")
    ray.add_argument("--replicas", type=int, default=1, help="with --ray: model replicas (each holds the models and their stream groups)")
    ray.add_argument("--ray-address", default=None, help="with --ray: join this Ray cluster ('auto', or host:port); default: start a local Ray instance, stopped on exit")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="with --ray: CPUs each replica reserves (its torch threads)")
    ray.add_argument("--replica-gpus", type=float, default=0.0, help="with --ray: GPUs each replica reserves (use --device cuda)")
    ray.add_argument("--min-replicas", type=int, default=None, help="with --ray: autoscale on sessions, from this many replicas")
    ray.add_argument("--max-replicas", type=int, default=None, help="with --ray: autoscale on sessions, up to this many replicas")
    ray.add_argument("--sessions-per-replica", type=float, default=8.0, help="with autoscaling: the sessions each replica should hold (size it with `bench --streams` or `loadtest`)")
    ray.add_argument("--gateways", type=int, default=1, help="with --ray: gateway replicas relaying sessions (Ray's proxy spreads connections over them)")
    ray.add_argument("--drain-timeout", type=float, default=300.0, help="with --ray: seconds a replaced replica keeps serving its live sessions")
    ray.add_argument("--detach", action="store_true", help="with --ray and --ray-address: deploy (or update: new weights roll out) and return, leaving it running")

    client = sub.add_parser("client", help="stream audio to a codecstream server and back")
    client.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    client.add_argument("--model", default=None, help="model to ask for (default: the server's)")
    client.add_argument("--input", type=Path, default=None, help="audio file to send (default: the microphone)")
    client.add_argument("--output", type=Path, default=None, help="write what comes back here (default: the speakers)")
    client.add_argument("--direction", default="audio->audio", choices=["audio->audio", "audio->codes"])
    client.add_argument("--chunk-ms", type=float, default=20.0)
    client.add_argument("--realtime", action="store_true", help="pace a file in real time")
    client.add_argument("--duration", type=float, default=None, help="microphone mode: stop after this many seconds")
    client.add_argument("--token", default=None)

    tts = sub.add_parser("tts-play", help="play a TTS token stream (Orpheus or Bark layout) as it is generated; prints time to first audio")
    tts.add_argument("--layout", choices=["orpheus", "bark", "bark-coarse"], default="orpheus")
    tts.add_argument("--model", default=None, help="decoder (default: the layout's codec; bark also takes vocos-encodec-24khz)")
    tts.add_argument("--weights", default=None)
    tts.add_argument("--text", default=None, help="what the stand-in LM says")
    tts.add_argument("--voice", choices=["espeak", "piper"], default="espeak")
    tts.add_argument("--speed", type=float, default=1.2, help="token rate as a multiple of real time (default 1.2)")
    tts.add_argument("--jitter-ms", type=float, default=20.0)
    tts.add_argument("--burst", type=int, default=1, help="tokens per arrival")
    tts.add_argument("--decode-every", choices=["token", "frame"], default="token", help="orpheus: decode per token or per 7-token frame")
    tts.add_argument("--output", type=Path, default=None, help="write the audio here instead of playing it")
    tts.add_argument("--output-device", default=None)
    tts.add_argument("--backend", choices=["sounddevice", "pyaudio"], default="sounddevice")
    tts.add_argument("--prefill-ms", type=float, default=200.0, help="audio buffered before playback starts")
    tts.add_argument("--server", default=None, help="decode on a codecstream server (ws://host:port/ws)")
    tts.add_argument("--json", type=Path, default=None)

    loadtest = sub.add_parser("loadtest", help="N real-time sessions against a server: lag p50/p99, lag growth, loss; the largest N held")
    loadtest.add_argument("--url", default=None, help="a running server's WebSocket URL (default: start `codecstream serve` for the test)")
    loadtest.add_argument("--model", default="encodec-24khz")
    loadtest.add_argument("--weights", default="random", help="with no --url: the started server's weights for --model")
    loadtest.add_argument("--direction", default="audio->audio", choices=["audio->audio", "audio->codes", "codes->audio"])
    loadtest.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="session counts to try, in order")
    loadtest.add_argument("--seconds", type=float, default=20.0, help="audio each session streams")
    loadtest.add_argument("--chunk-ms", type=float, default=20.0, help="audio per message (codes: whole frames of every level)")
    loadtest.add_argument("--max-lag-ms", type=float, default=150.0, help="held: lag p99 under this (default 150)")
    loadtest.add_argument("--max-growth-ms", type=float, default=50.0, help="held: lag grows less than this over the run (default 50)")
    loadtest.add_argument("--stop-at-fail", action="store_true", help="stop after the first count not held")
    loadtest.add_argument("--token", default=os.environ.get("CODECSTREAM_TOKEN"))
    loadtest.add_argument("--serve-args", default="", help="with no --url: more arguments for the started server, e.g. \"--dtype bfloat16 --compute-threads 2\"")
    loadtest.add_argument("--batching", action="store_true", help="with no --url: start the server with --batching")
    loadtest.add_argument("--json", type=Path, default=None, help="write every run's figures here")

    report = sub.add_parser("latency-report", help="SNR and log-mel distance against latency, windowed vs exact, on real speech")
    report.add_argument("--model", default="hifigan-universal", help="a model whose encode is a frontend (default: hifigan-universal)")
    report.add_argument("--weights", default=None, help="checkpoint (default: the published weights)")
    report.add_argument("--voices", nargs="+", default=["espeak", "piper"], help="speech sources (espeak, piper)")
    report.add_argument("--lookahead", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16], help="lookahead frames R of the windowed streams")
    report.add_argument("--context-frames", type=int, default=None, help="left context L (default: enough for the receptive field)")
    report.add_argument("--block-frames", type=int, default=4, help="frames decoded per window (default: 4)")
    report.add_argument("--text", default=None, help="what the voices say")
    report.add_argument("--json", type=Path, default=Path("bench-results") / "latency_quality.json")
    report.add_argument("--png", type=Path, default=Path("bench-results") / "latency_quality.png")
    return parser


def _load(args: argparse.Namespace, name: str) -> "Codec":
    from ..registry import load

    dtype = torch.float64 if args.float64 else torch.float32
    return load(name, args.weights, device=args.device, dtype=dtype)


def _encode_options(args: argparse.Namespace) -> dict[str, Any]:
    return {} if args.bandwidth is None else {"bandwidth": args.bandwidth}


def _read_input(args: argparse.Namespace, model: "Codec") -> torch.Tensor:
    from ..io.wav import conform_audio, read_audio

    audio, rate = read_audio(args.input)
    return conform_audio(
        audio, rate, target_rate=model.encoder_sample_rate, target_channels=model.channels, resample=args.resample, mix=args.mix
    )


def _progress(args: argparse.Namespace, seconds: float) -> Progress:
    enabled = args.progress if args.progress is not None else (sys.stderr.isatty() and seconds > 10)
    return Progress(seconds, enabled=enabled)


def _stream_encode(model: "Codec", audio: torch.Tensor, args: argparse.Namespace, on_codes: Callable[[Any], None]) -> "EncoderStream":
    """Push ``audio`` through an encoder stream ``--chunk-ms`` at a time; return the stream."""
    chunk = max(1, round(args.chunk_ms * model.sample_rate / 1000))
    progress = _progress(args, audio.shape[-1] / model.sample_rate)
    stream = model.encoder_stream(1, **_encode_options(args))
    for start, end in _chunks(audio.shape[-1], chunk):
        on_codes(stream.push(audio[..., start:end]))
        progress.update(end / model.sample_rate)
    on_codes(stream.flush())
    progress.update(audio.shape[-1] / model.sample_rate, final=True)
    return stream


def _cmd_list(args: argparse.Namespace) -> int:
    from ..registry import get_spec, list_models

    for name in list_models():
        print(f"{name:24s} {get_spec(name).summary}")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from ..codes_file import CodesFile, write_codes

    model = _load(args, args.model)
    audio = _read_input(args, model)
    if model.streaming_encoder:
        parts: list[Any] = []
        _stream_encode(model, audio, args, parts.append)
        codes = model.concat_codes(parts)
    else:  # the encoder needs the whole signal
        codes = model.encode(audio, **_encode_options(args))
    levels = model.codes_to_arrays(codes)
    write_codes(
        args.output,
        CodesFile(
            model=model.name,
            sample_rate=model.sample_rate,
            channels=model.channels,
            hop_length=model.hop_length,
            num_samples=audio.shape[-1] * model.sample_rate // model.encoder_sample_rate,
            levels=levels,
            bandwidth_kbps=args.bandwidth,
        ),
    )
    print(f"{args.input} -> {args.output}: {model.num_frames(codes)} frames, model {model.name}")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from ..codes_file import read_codes
    from ..io.wav import write_audio

    file = read_codes(args.input)
    name = args.model or file.model
    if name != file.model:
        raise CodecStreamError(f"{args.input} holds {file.model} codes; it cannot be decoded with {name}")
    model = _load(args, name)
    codes = model.codes_from_arrays(file.levels)
    if not model.exact_decoder:  # no exact stream: decode offline
        audio = model.decode(codes)[..., : file.num_samples]
        write_audio(args.output, audio, model.sample_rate)
        print(f"{args.input} -> {args.output}: {audio.shape[-1] / model.sample_rate:.2f} s at {model.sample_rate} Hz (offline)")
        return 0
    stream = model.decoder_stream(1)
    frames = model.num_frames(codes)
    frames_per_chunk = max(1, round(args.chunk_ms / 1000 * model.frame_rate))
    progress = _progress(args, file.num_samples / model.sample_rate)
    parts = []
    for start, end in _chunks(frames, frames_per_chunk):
        parts.append(stream.push(model.slice_codes(codes, start, end)))
        progress.update(min(end * model.hop_length, file.num_samples) / model.sample_rate)
    parts.append(stream.flush())
    progress.update(file.num_samples / model.sample_rate, final=True)
    audio = torch.cat(parts, dim=-1)[..., : file.num_samples]
    write_audio(args.output, audio, model.sample_rate)
    print(f"{args.input} -> {args.output}: {audio.shape[-1] / model.sample_rate:.2f} s at {model.sample_rate} Hz")
    return 0


def _cmd_roundtrip(args: argparse.Namespace) -> int:
    from ..io.wav import write_audio

    model = _load(args, args.model)
    audio = _read_input(args, model)
    out_samples = audio.shape[-1] * model.sample_rate // model.encoder_sample_rate
    if not (model.streaming_encoder and model.exact_decoder):
        out = model.decode(model.encode(audio, **_encode_options(args)))[..., :out_samples]
        write_audio(args.output, out, model.sample_rate)
        print(f"{args.input} -> {args.output}: {out.shape[-1] / model.sample_rate:.2f} s, model {model.name}, offline (it cannot stream exactly)")
        return 0
    decoder = model.decoder_stream(1)
    parts: list[torch.Tensor] = []
    encoder = _stream_encode(model, audio, args, lambda codes: parts.append(decoder.push(codes)))
    parts.append(decoder.flush())
    out = torch.cat(parts, dim=-1)[..., :out_samples]
    write_audio(args.output, out, model.sample_rate)
    print(
        f"{args.input} -> {args.output}: {out.shape[-1] / model.sample_rate:.2f} s, model {model.name}, "
        f"algorithmic latency {encoder.latency_ms + decoder.latency_ms:.1f} ms"
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmark

    result = run_benchmark(
        args.model,
        weights=args.weights,
        seconds=args.seconds,
        chunk_ms=args.chunk_ms,
        bandwidth=args.bandwidth,
        repeats=args.repeats,
        reference=not args.no_reference,
        device=args.device,
        dtype=torch.float64 if args.float64 else torch.bfloat16 if args.bfloat16 else torch.float32,
        streams=args.streams,
    )
    result.print()
    result.write_json(args.json)
    if args.plot and result.streams:
        from .bench import plot_streams

        plot_streams(result, args.plot)
        print(f"plot written to {args.plot}")
    print(f"results written to {args.json}")
    return 0


def _cmd_latency_report(args: argparse.Namespace) -> int:
    from .report import DEFAULT_TEXT, format_table, latency_quality, write_json, write_plot

    text = args.text or DEFAULT_TEXT
    rows = latency_quality(
        args.model, weights=args.weights, voices=args.voices, lookaheads=args.lookahead,
        context_frames=args.context_frames, block_frames=args.block_frames, text=text,
    )
    settings = {
        "model": args.model, "voices": args.voices, "lookahead_frames": args.lookahead,
        "context_frames": args.context_frames, "block_frames": args.block_frames, "text": text,
        "torch_threads": torch.get_num_threads(),
    }
    write_json(args.json, rows, settings)
    print(format_table(rows))
    try:
        write_plot(args.png, rows, f"{args.model}: latency against quality ({args.block_frames}-frame blocks)")
        print(f"wrote {args.json} and {args.png}")
    except ImportError:
        print(f"wrote {args.json}; install matplotlib (codecstream[report]) for the plot")
    return 0


def _cmd_loopback(args: argparse.Namespace) -> int:
    from .loopback import LoopbackConfig, run_loopback

    metrics = run_loopback(
        LoopbackConfig(
            model=args.model, weights=args.weights, backend=args.backend, input_device=args.input_device,
            output_device=args.output_device, input_file=args.input, output_file=args.output, block_ms=args.block_ms,
            duration_s=args.duration, realtime_file=args.realtime, save_input=args.save_input,
            metrics_json=args.json, status=not args.quiet,
        )
    )
    print(
        f"{metrics['audio_seconds']:.1f} s through {metrics['model']}: latency {metrics['total_ms']:.1f} ms "
        f"(model {metrics['algorithmic_ms']:.1f} + buffers {metrics['buffering_ms']:.1f} + compute {metrics['compute_ms']:.1f} "
        f"+ device {metrics['device_ms']:.1f}), RTF {metrics['rtf']:.2f}, xruns {metrics['xruns']}"
        + ("" if metrics["keeping_up"] else " -- this machine cannot run the model in real time")
        + (f"; wrote {metrics['output_file']}" if "output_file" in metrics else "")
    )
    return 0


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from .loadtest import LoadTestConfig, run_loadtest

    config = LoadTestConfig(
        url=args.url, model=args.model, weights=args.weights, direction=args.direction, sessions=tuple(args.sessions),
        seconds=args.seconds, chunk_ms=args.chunk_ms, max_lag_ms=args.max_lag_ms, max_growth_ms=args.max_growth_ms,
        stop_at_fail=args.stop_at_fail, token=args.token, batching=args.batching, json_path=args.json,
        serve_args=tuple(args.serve_args.split()),
    )
    return run_loadtest(config)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..server.app import ServerConfig, run_server

    weights = {}
    for item in args.weights:
        name, _, value = item.partition("=")
        if not value:
            raise CodecStreamError(f"--weights takes MODEL=WEIGHTS, got {item!r}")
        weights[name] = value
    config = ServerConfig(
        host=args.host, port=args.port, default_model=args.model, models=tuple(args.models), weights=weights,
        load_on_request=args.load_on_request, max_sessions=args.max_sessions, max_message_bytes=args.max_message_bytes,
        max_message_ms=args.max_message_ms, idle_timeout_s=args.idle_timeout, hello_timeout_s=args.hello_timeout,
        token=args.token, allowed_origins=tuple(args.allow_origin) if args.allow_origin else None,
        record_dir=args.record_dir, record_max_bytes=int(args.record_max_mb * 1e6), compute_threads=args.compute_threads,
        batching=args.batching, tick_ms=args.tick_ms, warm_up=not args.no_warm_up, dtype=args.dtype, device=args.device,
    )
    config.validate()
    if args.ray:
        from ..server.ray_serve import RayOptions, run_ray

        if args.detach and args.ray_address is None:
            raise CodecStreamError("--detach needs --ray-address: a local Ray instance stops when this command exits")
        options = RayOptions(
            replicas=args.replicas, address=args.ray_address, replica_cpus=args.replica_cpus, replica_gpus=args.replica_gpus,
            min_replicas=args.min_replicas, max_replicas=args.max_replicas, target_sessions=args.sessions_per_replica,
            drain_timeout_s=args.drain_timeout, gateways=args.gateways,
        )
        run_ray(config, options, detach=args.detach)
        return 0
    if args.detach or args.ray_address or args.replicas != 1 or args.gateways != 1:
        raise CodecStreamError("--replicas, --gateways, --ray-address and --detach need --ray")
    run_server(config, on_ready=lambda server: print(f"serving on http://{config.host}:{server.port}/ (WebSocket /ws)", flush=True))
    return 0


def _cmd_client(args: argparse.Namespace) -> int:
    from ..server.live import run_client

    summary = run_client(args)
    print(summary)
    return 0


def _cmd_tts_play(args: argparse.Namespace) -> int:
    from .tts import DEFAULT_TEXT, TTSPlayConfig, run_tts_play

    metrics = run_tts_play(
        TTSPlayConfig(
            layout=args.layout, model=args.model, weights=args.weights, text=args.text or DEFAULT_TEXT, voice=args.voice,
            speed=args.speed, jitter_ms=args.jitter_ms, burst=args.burst, output=args.output, output_device=args.output_device,
            backend=args.backend, prefill_ms=args.prefill_ms, server=args.server, decode_every=args.decode_every,
            metrics_json=args.json,
        )
    )
    lag = "-" if metrics["steady_lag_ms"] is None else f"{metrics['steady_lag_ms']:.0f} ms"
    print(
        f"time to first audio {metrics['ttfa_ms']:.1f} ms (after {metrics['tokens_before_audio']} tokens; decoder latency "
        f"{metrics['decoder_latency_ms']:.1f} ms); steady-state lag {lag}; underruns {metrics['underruns']}; "
        f"{metrics['audio_seconds']:.2f} s of audio"
    )
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _cmd_list,
    "encode": _cmd_encode,
    "decode": _cmd_decode,
    "roundtrip": _cmd_roundtrip,
    "bench": _cmd_bench,
    "latency-report": _cmd_latency_report,
    "loopback": _cmd_loopback,
    "serve": _cmd_serve,
    "loadtest": _cmd_loadtest,
    "client": _cmd_client,
    "tts-play": _cmd_tts_play,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except CodecStreamError as exc:
        parser.exit(2, f"codecstream {args.command}: error: {type(exc).__name__}: {exc}\n")
    except (FileNotFoundError, IsADirectoryError) as exc:
        parser.exit(2, f"codecstream {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    return 0
