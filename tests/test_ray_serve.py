"""`codecstream serve --ray` on a real local Ray instance: 2 replicas behind the gateway, 8
sessions spread over both and exact; a replica killed mid-stream ends its own sessions with a
clear error while the others stay exact; a rolling update drains the old replicas without
cutting a live session; a clean exit leaves no Ray process. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

ray = pytest.importorskip("ray", reason="Ray Serve is the ray extra (installed by .ci/setup)")

import codecstream as cs  # noqa: E402
from codecstream.server.protocol import Hello, Protocol  # noqa: E402
from codecstream.server.app import ServerConfig  # noqa: E402
from codecstream.server.client import stream_audio  # noqa: E402
from codecstream.signals import speech_like  # noqa: E402

RATE = 24_000
MODEL = "encodec-24khz"
OPTIONS = {"bandwidth": 6.0}
RAY_PROCESSES = ("raylet", "gcs_server")


def ray_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout.splitlines()
    return [line for line in out if any(name in line.split(" ")[0] for name in RAY_PROCESSES)]


def expected(model: cs.Codec, signal: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(signal)[None, None]
    return model.decode(model.encode(x, **OPTIONS))[0, 0, : len(signal)].numpy()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The CLI as a user runs it, on a free port; the tests attach to its Ray instance."""
    if ray_processes():
        pytest.skip("another Ray instance runs on this machine: stop it (`ray stop`) so the test can start and stop its own")
    with socket_port() as port:
        pass
    command = [
        sys.executable, "-m", "codecstream", "serve", "--ray", "--replicas", "2", "--replica-cpus", "0.5",
        "--port", str(port), "--model", MODEL, "--weights", f"{MODEL}=random", "--idle-timeout", "120", "--drain-timeout", "120",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("serving on"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the Ray service did not start in 240 s")
        else:
            raise RuntimeError(f"`codecstream serve --ray` exited with {process.wait()}")
        ray.init(address="auto", namespace="codecstream", log_to_driver=False, configure_logging=False)
        yield process, port
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


class socket_port:
    """A free TCP port (closed again before the server binds it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


def run(coroutine, timeout_s: float = 240):
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


def test_eight_sessions_spread_over_two_replicas_and_exact(service):
    _, port = service
    signals = [speech_like(1.0, RATE, 1, seed=i)[0, 0].numpy() for i in range(8)]

    async def sessions():
        return await asyncio.gather(*[stream_audio(url(port), s, RATE, model=MODEL, audio_format="f32", options=OPTIONS) for s in signals])

    results = run(sessions())
    model = cs.load(MODEL, "random")
    for clip, result in zip(signals, results):
        assert result.audio.shape == (len(clip), 1)
        assert float(np.abs(result.audio[:, 0] - expected(model, clip)).max()) <= 1e-4
    served_by = [r.ready.replica for r in results]
    assert len(set(served_by)) == 2 and min(served_by.count(name) for name in set(served_by)) >= 3
    metrics = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read())
    assert metrics["sessions_total"] == 8 and metrics["audio_seconds"] == pytest.approx(8.0)
    assert sorted(r["replica"] for r in metrics["replicas"]) == sorted(set(served_by))
    assert json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30).read()) == {"status": "ok"}
    assert b"<html" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().lower()
    models = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=30).read())
    assert [m["model"] for m in models["models"]] == [MODEL]  # answered by a replica, through the gateway
    replay = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/replay?layout=orpheus", timeout=60).read())
    assert "needs snac-24khz" in replay["error"]
    # The plain server's checks hold at the gateway: a foreign Origin is refused.
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(request, timeout=30)

    async def foreign_page():
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus, match="403"):
            async with connect(url(port), origin="http://evil.example", open_timeout=30):
                pass

    run(foreign_page(), 60)


async def _session_until_cut(port: int, clip: np.ndarray, started: asyncio.Event, replicas: list[str]) -> tuple[str, int | None, str]:
    """A real-time session that reports its replica once ready; ends with the error it got
    and the close code, or ("", None, "") when it finished."""
    from websockets.asyncio.client import connect

    protocol = Protocol(max_message_bytes=1 << 24)
    async with connect(url(port), max_size=1 << 24) as websocket:
        await websocket.send(protocol.hello(Hello(model=MODEL, direction="audio->audio", sample_rate=RATE, channels=1, format="f32", options=OPTIONS)))
        ready = protocol.receive(await websocket.recv())
        replicas.append(ready.replica)
        started.set()
        chunk = RATE // 50
        for start in range(0, len(clip), chunk):
            try:
                await websocket.send(protocol.audio(clip[start : start + chunk, None]))
            except Exception:
                break
            await asyncio.sleep(0.02)
        else:
            await websocket.send(Protocol.end())
        error = ""
        try:
            async for message in websocket:
                event = protocol.receive(message)
                if type(event).__name__ == "ErrorMessage":
                    error = event.code
        except Exception:
            pass
        return error, websocket.close_code, websocket.close_reason or ""


def test_a_killed_replica_ends_its_sessions_clearly_and_others_stay_exact(service):
    _, port = service
    signals = [speech_like(3.0, RATE, 1, seed=10 + i)[0, 0].numpy() for i in range(4)]

    async def scenario():
        started = [asyncio.Event() for _ in signals]
        replicas: list[list[str]] = [[] for _ in signals]
        tasks = [asyncio.create_task(_session_until_cut(port, s, e, r)) for s, e, r in zip(signals, started, replicas)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
        victim = replicas[0][0]
        await asyncio.sleep(0.5)  # mid-stream
        ray.kill(ray.get_actor(f"SERVE_REPLICA::codecstream#CodecReplica#{victim}", namespace="serve"))
        ended = await asyncio.gather(*tasks)
        return victim, [r[0] for r in replicas], ended

    victim, served_by, ended = run(scenario())
    assert victim in served_by and len(set(served_by)) == 2
    for replica, (error, code, reason) in zip(served_by, ended):
        if replica == victim:
            assert (error, code, reason) == ("replica_failed", 1011, "replica_failed")
        else:
            assert (error, code) == ("", 1000)  # finished normally
    # A new session goes to a live replica and is exact.
    clip = speech_like(0.5, RATE, 1, seed=20)[0, 0].numpy()
    result = run(stream_audio(url(port), clip, RATE, model=MODEL, audio_format="f32", options=OPTIONS))
    assert result.ready.replica != victim
    assert float(np.abs(result.audio[:, 0] - expected(cs.load(MODEL, "random"), clip)).max()) <= 1e-4


def test_a_rolling_update_drains_old_replicas_without_cutting_a_live_session(service, tmp_path):
    from codecstream.server import ray_serve

    _, port = service
    new_model = cs.load(MODEL, "random", seed=1)
    checkpoint = tmp_path / "encodec-seed1.safetensors"
    save_file({k: v.contiguous() for k, v in new_model.state_dict().items()}, checkpoint)
    old_model = cs.load(MODEL, "random")
    clip = speech_like(1.0, RATE, 1, seed=30)[0, 0].numpy()

    async def scenario():
        from websockets.asyncio.client import connect

        protocol = Protocol(max_message_bytes=1 << 24)
        async with connect(url(port), max_size=1 << 24) as websocket:
            await websocket.send(protocol.hello(Hello(model=MODEL, direction="audio->audio", sample_rate=RATE, channels=1, format="f32", options=OPTIONS)))
            ready = protocol.receive(await websocket.recv())
            half = len(clip) // 2
            await websocket.send(protocol.audio(clip[:half, None]))
            config = ServerConfig(port=port, default_model=MODEL, weights={MODEL: str(checkpoint)}, idle_timeout_s=120)
            options = ray_serve.RayOptions(replicas=2, replica_cpus=0.5, address="auto", drain_timeout_s=120)
            await asyncio.to_thread(ray_serve.deploy, config, options)  # returns once the new replicas serve
            registry = await asyncio.to_thread(ray_serve.replicas)
            assert registry[ready.replica]["draining"]  # the old replica still runs, draining
            fresh = await stream_audio(url(port), clip, RATE, model=MODEL, audio_format="f32", options=OPTIONS)
            await websocket.send(protocol.audio(clip[half:, None]))
            await websocket.send(Protocol.end())
            pieces = []
            async for message in websocket:
                event = protocol.receive(message)
                if type(event).__name__ == "Audio":
                    pieces.append(event.samples)
            return ready.replica, np.concatenate(pieces)[:, 0], fresh, websocket.close_code

    old_replica, audio, fresh, code = run(scenario(), 400)
    assert code == 1000
    assert float(np.abs(audio - expected(old_model, clip)).max()) <= 1e-4  # the old weights, to the end
    assert fresh.ready.replica != old_replica
    assert float(np.abs(fresh.audio[:, 0] - expected(new_model, clip)).max()) <= 1e-4  # a new session: the new weights
    deadline = time.monotonic() + 60
    from codecstream.server import ray_serve as rs

    while old_replica in rs.replicas() and time.monotonic() < deadline:
        time.sleep(1)
    assert old_replica not in rs.replicas()  # drained, then stopped


def test_clean_exit_leaves_no_ray_process(service):
    process, _ = service
    ray.shutdown()
    process.send_signal(signal.SIGTERM)
    assert process.wait(90) == 0
    deadline = time.monotonic() + 30
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert ray_processes() == []
