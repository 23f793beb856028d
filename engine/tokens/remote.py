"""Token playback through ``codecstream serve``: the adapter turns tokens into codes here, the
server decodes them (direction ``codes->audio``) and sends audio back."""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..runtime._compat import Renamed
from ..server.client import ServerError, expect_ready
from ..server.protocol import Audio, End, ErrorMessage, Hello, Protocol
from ..server.session import codes_to_wire
from .base import TokenAdapter, TokenIds

__all__ = ["RemoteTokenDecoder"]


class RemoteTokenDecoder:
    """Like a local token adapter (``push`` / ``flush`` returning audio), but decoded by a
    server. ``push`` returns the audio that has come back so far; ``flush`` waits for the end.
    ``adapter`` validates and splits tokens (its ``codes_for``); its model names the server model.
    A :class:`~codecstream.tokens.base.TokenDecoder`."""

    latency = Renamed[int]("latency_samples")  # the old name (deprecated, kept for one release)

    def __init__(self, url: str, adapter: TokenAdapter, *, token: str | None = None, options: dict[str, Any] | None = None) -> None:
        from websockets.sync.client import connect

        self.adapter = adapter
        self.model = adapter.model
        self._protocol = Protocol(max_message_bytes=1 << 24)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        # Entered like a context manager (closed in flush): plain connect() is deprecated.
        self._socket = connect(url, additional_headers=headers, max_size=1 << 24).__enter__()
        rate = self.model.sample_rate
        self._socket.send(self._protocol.hello(Hello(model=self.model.name, direction="codes->audio", sample_rate=rate, format="f32", options=options or {})))
        self.ready = ready = expect_ready(self._protocol.receive(self._socket.recv()))
        self.latency_samples = round(ready.latency_ms * rate / 1000)
        self._audio: queue.Queue[np.ndarray | None | BaseException] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for message in self._socket:
                event = self._protocol.receive(message)
                if isinstance(event, Audio):
                    self._audio.put(event.samples)
                elif isinstance(event, ErrorMessage):
                    self._audio.put(ServerError(event.code, event.message))
                    return
                elif isinstance(event, End):
                    break
        except Exception as exc:  # the connection broke: surface it on the caller's side
            self._audio.put(exc)
            return
        self._audio.put(None)

    def _drain(self, *, until_end: bool = False) -> Tensor:
        pieces = []
        while True:
            try:
                item = self._audio.get(timeout=30) if until_end else self._audio.get_nowait()
            except queue.Empty:
                break
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            pieces.append(item)
        samples = np.concatenate(pieces) if pieces else np.zeros((0, 1), np.float32)
        return torch.from_numpy(np.ascontiguousarray(samples.T))[None]

    def push(self, tokens: TokenIds, /) -> Tensor:
        codes = self.adapter.codes_for(tokens)
        has_codes = codes is not None and (any(level.numel() for level in codes) if isinstance(codes, list) else codes.shape[-1] > 0)
        if has_codes:
            self._socket.send(self._protocol.codes(codes_to_wire(codes)))
        return self._drain()

    def flush(self) -> Tensor:
        self.adapter.check_end()
        self._socket.send(self._protocol.end())
        audio = self._drain(until_end=True)
        self._socket.close()
        return audio
