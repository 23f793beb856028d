"""The server batches sessions: 16 real-time sessions through a real codec (EnCodec 24 kHz at
its published size, random weights), each output exact, nothing lost (counts and correctness,
never seconds: how many sessions this machine holds in real time is `codecstream loadtest`'s
job, reported in the README).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from helpers import running_server

pytest.importorskip("websockets")

from codecstream.server.app import ServerConfig  # noqa: E402
from codecstream.server.client import stream_audio  # noqa: E402
from codecstream.signals import speech_like  # noqa: E402

SESSIONS = 16
SECONDS = 1.5
RATE = 24_000


@pytest.fixture(scope="module")
def server():
    config = ServerConfig(
        port=0, default_model="encodec-24khz", weights={"encodec-24khz": "random"}, max_sessions=SESSIONS + 4,
        idle_timeout_s=60.0, send_timeout_s=60.0, token=None, batching=True,
    )
    with running_server(config) as instance:
        yield instance


def test_sixteen_realtime_sessions_share_batches_and_stay_exact(server):
    signals = [speech_like(SECONDS, RATE, 1, seed=i)[0, 0].numpy() for i in range(SESSIONS)]
    options = {"bandwidth": 6.0}
    url = f"ws://127.0.0.1:{server.port}/ws"

    async def sessions():
        return await asyncio.gather(*[
            stream_audio(url, signal, RATE, model="encodec-24khz", chunk_ms=20, realtime=True, audio_format="f32", options=options)
            for signal in signals
        ])

    results = asyncio.run(asyncio.wait_for(sessions(), 600))
    model = server._models["encodec-24khz"]
    for signal, result in zip(signals, results):
        assert result.audio.shape == (len(signal), 1)  # every sample came back; the client checked every sequence number
        x = torch.from_numpy(signal)[None, None]
        expected = model.decode(model.encode(x, bandwidth=6.0))[0, 0, : len(signal)].numpy()
        assert float(np.abs(result.audio[:, 0] - expected).max()) <= 1e-4
    groups = server.scheduler.groups.values()
    encoder = next(g for g in groups if g.side == "encoder")
    assert max(encoder.batch_sizes) >= SESSIONS // 2  # the sessions really shared forward passes
    assert len(server.sessions) == 0 and all(len(g) == 0 for g in groups)  # every row left its group
    metrics = server.metrics()
    assert metrics["batching"] and all("tick_p99_ms" in g for g in metrics["groups"])
    # One frame of algorithmic latency, plus one frame that a 2-frame block (what covers the
    # 20 ms tick) waits for: batched sessions trade 13 ms for shared forward passes.
    assert results[0].ready.latency_ms == pytest.approx(2 * 320 / 24)
