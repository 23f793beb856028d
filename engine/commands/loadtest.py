"""``codecstream loadtest``: how many real-time sessions does a server hold?

For each session count N, N clients open sessions at once and stream at real-time pace: speech
(the bundled clip, at the model's rate, each client from another point of it) in ``chunk_ms``
PCM16 messages, or for ``codes->audio`` valid random codes, one frame of every level per
message, as a TTS model emits them. Each client measures, for every message that comes back,
its *lag*: how much later than the real-time schedule (the input's send time plus the stated
algorithmic latency) it arrived. A count is **held** when every session's lag p99 stays under
``max_lag_ms``, the lag does not grow over the run (last fifth against first fifth), nothing is
lost (sequence numbers checked, the whole output came back) and no session failed.

    codecstream loadtest --model encodec-24khz --sessions 1 4 8 16 --seconds 20
    codecstream loadtest --url ws://host:8765/ws --token T --direction codes->audio --model snac-24khz

Without ``--url`` it starts ``codecstream serve`` (random weights unless ``--weights``) for the
test and stops it after.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LoadTestConfig", "SessionFigures", "RunFigures", "run_sessions", "run_loadtest"]


@dataclass(frozen=True)
class LoadTestConfig:
    url: str | None = None
    model: str = "encodec-24khz"
    weights: str = "random"
    direction: str = "audio->audio"
    sessions: tuple[int, ...] = (1, 2, 4, 8, 16)
    seconds: float = 20.0
    chunk_ms: float = 20.0
    max_lag_ms: float = 150.0
    max_growth_ms: float = 50.0
    stop_at_fail: bool = False
    token: str | None = None
    batching: bool = False
    json_path: Path | None = None
    serve_args: tuple[str, ...] = ()


@dataclass
class SessionFigures:
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    lag_growth_ms: float = 0.0  # mean lag of the last fifth minus the first fifth
    sent_s: float = 0.0  # audio (or codes' audio) sent
    received_s: float = 0.0  # audio (or codes' audio) received
    lost_s: float = 0.0  # expected but never received
    first_output_ms: float = 0.0  # from the first message sent to the first output received
    error: str | None = None


@dataclass
class RunFigures:
    sessions: int
    held: bool
    lag_p50_ms: float
    lag_p99_ms: float  # the worst session's
    lag_growth_ms: float  # the worst session's
    lost_s: float
    errors: int
    wall_s: float
    per_session: list[SessionFigures] = field(default_factory=list)


def _speech(seconds: float, rate: int, offset_s: float) -> np.ndarray:
    """The bundled speech clip at ``rate``, looped to ``seconds``, from ``offset_s`` on."""
    import soxr

    from ..signals import bundled_clip

    clip, clip_rate = bundled_clip()
    mono = soxr.resample(clip[:, 0], clip_rate, rate).astype(np.float32)
    start = int(offset_s * rate) % len(mono)
    total = int(seconds * rate)
    return np.resize(np.roll(mono, -start), total)[:, None] * 0.9


async def _session(url: str, config: LoadTestConfig, index: int, info: dict[str, Any]) -> SessionFigures:
    """One real-time client; its lag figures."""
    from websockets.asyncio.client import connect

    from ..server.client import expect_ready, send_paced
    from ..server.protocol import Audio, Codes, End, ErrorMessage, Hello, Protocol

    figures = SessionFigures()
    protocol = Protocol(max_message_bytes=1 << 24)
    rate = int(info["sample_rate"])
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
    rng = np.random.default_rng(index)
    try:
        async with connect(url, additional_headers=headers, max_size=1 << 24, open_timeout=60) as websocket:
            await websocket.send(protocol.hello(Hello(model=config.model, direction=config.direction, sample_rate=rate, channels=1)))
            ready = expect_ready(protocol.receive(await websocket.recv()))
            latency_s = ready.latency_ms / 1000
            if config.direction == "codes->audio":
                levels = ready.code_levels
                frame_s = max(1.0 / level["frame_rate"] for level in levels)  # one frame of every level
                messages = max(1, int(config.seconds / frame_s))
                per_message = [max(1, round(frame_s * level["frame_rate"])) for level in levels]
                payloads = [
                    protocol.codes([rng.integers(0, level["codebook_size"], (level["codebooks"], n), dtype=np.int32) for level, n in zip(levels, per_message)])
                    for _ in range(messages)
                ]
                period_s, sent_total_s = frame_s, messages * frame_s
            else:
                chunk = max(1, round(config.chunk_ms * rate / 1000))
                audio = _speech(config.seconds, rate, offset_s=1.37 * index)
                payloads = [protocol.audio(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
                period_s, sent_total_s = chunk / rate, len(audio) / rate
            figures.sent_s = sent_total_s
            arrivals: list[tuple[float, float]] = []  # (arrival time, output seconds so far)
            received_s = 0.0
            started = time.monotonic()
            sender = asyncio.create_task(send_paced(websocket, payloads, period_s))
            try:
                async for message in websocket:
                    event = protocol.receive(message)  # raises on a lost or reordered message
                    if isinstance(event, Audio):
                        received_s += len(event.samples) / rate
                        arrivals.append((time.monotonic(), received_s))
                    elif isinstance(event, Codes):
                        received_s += max(level.shape[1] / lv["frame_rate"] for level, lv in zip(event.levels, ready.code_levels))
                        arrivals.append((time.monotonic(), received_s))
                    elif isinstance(event, ErrorMessage):
                        raise RuntimeError(f"{event.code}: {event.message}")
                    elif isinstance(event, End):
                        break
                await sender
            finally:
                if not sender.done():
                    sender.cancel()
            figures.received_s = received_s
            figures.first_output_ms = 1000 * (arrivals[0][0] - started) if arrivals else float("inf")
            figures.lost_s = max(0.0, sent_total_s - received_s - 0.05)  # a codec may trim < 50 ms at the end
            # Output up to t seconds needs input up to t + latency, sent at started + t + latency.
            lags = np.array([at - (started + min(out_s + latency_s, sent_total_s)) for at, out_s in arrivals]) * 1000
            if lags.size:
                fifth = max(1, lags.size // 5)
                figures.lag_p50_ms = float(np.percentile(lags, 50))
                figures.lag_p99_ms = float(np.percentile(lags, 99))
                figures.lag_growth_ms = float(lags[-fifth:].mean() - lags[:fifth].mean())
    except Exception as exc:  # reported per session; the run is then not held
        figures.error = f"{type(exc).__name__}: {exc}"
    return figures


async def run_sessions(url: str, config: LoadTestConfig, count: int, info: dict[str, Any]) -> RunFigures:
    """``count`` concurrent real-time sessions; their figures and whether the count is held."""
    started = time.monotonic()
    per_session = await asyncio.gather(*[_session(url, config, i, info) for i in range(count)])
    wall = time.monotonic() - started
    ok = [s for s in per_session if s.error is None]
    lost = sum(s.lost_s for s in per_session)
    p99 = max((s.lag_p99_ms for s in ok), default=float("inf"))
    growth = max((s.lag_growth_ms for s in ok), default=float("inf"))
    held = len(ok) == count and lost == 0 and p99 < config.max_lag_ms and growth < config.max_growth_ms
    p50 = float(np.median([s.lag_p50_ms for s in ok])) if ok else float("inf")
    return RunFigures(count, held, p50, p99, growth, lost, count - len(ok), wall, list(per_session))


def _model_info(url: str, model: str, token: str | None) -> dict[str, Any]:
    """What ``/models?model=`` says (sample rate for the clients)."""
    import urllib.request

    http = url.replace("ws://", "http://").replace("wss://", "https://").rsplit("/ws", 1)[0]
    request = urllib.request.Request(f"{http}/models?model={model}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        info: dict[str, Any] = json.loads(response.read())
    if "error" in info:
        raise SystemExit(f"codecstream loadtest: {info['error']}")
    return info


def _start_server(config: LoadTestConfig) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", config.model,
        "--weights", f"{config.model}={config.weights}", "--max-sessions", str(max(config.sessions) + 8),
    ]
    if config.batching:
        command.append("--batching")
    command.extend(config.serve_args)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""  # "serving on http://127.0.0.1:PORT/ ..."
    if "serving on" not in line:
        server.kill()
        raise SystemExit(f"codecstream loadtest: the server did not start ({line.strip() or 'no output'})")
    port = int(line.split(":")[2].split("/")[0])
    return server, f"ws://127.0.0.1:{port}/ws"


def format_run(run: RunFigures) -> str:
    state = "held" if run.held else "NOT held"
    return (
        f"{run.sessions:4d} sessions: lag p50 {run.lag_p50_ms:7.1f} ms, p99 {run.lag_p99_ms:7.1f} ms, "
        f"growth {run.lag_growth_ms:+7.1f} ms, lost {run.lost_s:.2f} s, errors {run.errors} -> {state}"
    )


def run_loadtest(config: LoadTestConfig) -> int:
    server = None
    url = config.url
    if url is None:
        server, url = _start_server(config)
    try:
        info = _model_info(url, config.model, config.token)
        first = None
        if server is not None:  # a fresh server: the first session's time to first output, then a warm one's
            short = LoadTestConfig(**{**asdict(config), "seconds": 1.0})
            cold, warm = (asyncio.run(_session(url, short, 0, info)) for _ in range(2))
            first = {"first_session_ms": cold.first_output_ms, "warm_session_ms": warm.first_output_ms}
            print(f"time to first output: first session after start {cold.first_output_ms:.0f} ms, a warm session {warm.first_output_ms:.0f} ms", flush=True)
        runs = []
        for count in config.sessions:
            run = asyncio.run(run_sessions(url, config, count, info))
            runs.append(run)
            print(format_run(run), flush=True)
            for figures in run.per_session:
                if figures.error:
                    print(f"      session error: {figures.error}", flush=True)
                    break
            if config.stop_at_fail and not run.held:
                break
        held = [r.sessions for r in runs if r.held]
        print(f"largest count held: {max(held) if held else 0} ({config.model}, {config.direction}, {config.chunk_ms:g} ms chunks, {config.seconds:g} s)")
        if config.json_path:
            config.json_path.write_text(json.dumps(
                {"config": {**asdict(config), "json_path": str(config.json_path)}, "first_output": first, "runs": [asdict(r) for r in runs]}, indent=2
            ))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
