"""``codecstream serve``: many WebSocket sessions on shared models, compute off the event loop.

The asyncio side (websockets) only parses messages, queues work and sends results. Model
compute runs on one compute thread that serves every session's queued chunks in arrival order,
so a slow model never blocks the event loop and one session's error never reaches another.
Per-session input queues are bounded: when a session's queue is full the server stops reading
that socket, and TCP pushes back on that client alone.

HTTP on the same port: ``/`` (the browser client), ``/health``, ``/metrics``; WebSockets on ``/ws``.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from ..errors import CodecStreamError
from .protocol import Audio, Codes, End, Hello, Protocol, ProtocolError
from .session import Session

__all__ = ["ServerConfig", "Server", "ComputeWorker"]

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/playback-worklet.js": ("playback-worklet.js", "text/javascript; charset=utf-8"),
}


@dataclass
class ServerConfig:
    """Server settings, grouped by topic."""

    # Network
    host: str = "127.0.0.1"
    port: int = 8765
    # Models
    default_model: str = "hifigan-universal"
    allowed_models: tuple[str, ...] | None = None  # None: every registered model
    weights: dict[str, str] = field(default_factory=dict)  # model name -> weights argument
    # Limits
    max_sessions: int = 32
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 30.0
    send_timeout_s: float = 10.0
    queue_chunks: int = 32
    # Security
    token: str | None = None
    allowed_origins: tuple[str, ...] | None = None  # None: any origin (and none)
    # Debugging
    record_dir: Path | None = None  # write each session's input and output audio here


class ComputeWorker:
    """Runs jobs for the event loop on one thread (the main thread under ``codecstream serve``:
    torch's CPU threads serve their creating thread best)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], asyncio.Future, asyncio.AbstractEventLoop] | None] = queue.Queue()
        self.busy_s = 0.0

    def submit(self, job: Callable[[], Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((job, future, loop))
        return future

    def depth(self) -> int:
        return self._jobs.qsize()

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                item = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                break
            job, future, loop = item
            started = time.perf_counter()
            try:
                result, error = job(), None
            except BaseException as exc:  # delivered to the session that asked, nowhere else
                result, error = None, exc
            self.busy_s += time.perf_counter() - started
            loop.call_soon_threadsafe(_settle, future, result, error)

    def close(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Server:
    """The server: ``serve()`` runs the event loop (in a thread when ``compute`` is driven by
    the caller, see ``codecstream serve``); ``stop()`` closes sessions gracefully."""

    def __init__(self, config: ServerConfig, worker: ComputeWorker | None = None) -> None:
        self.config = config
        self.worker = worker or ComputeWorker()
        self._models: dict[str, Any] = {}
        self._model_lock = threading.Lock()
        self.sessions: dict[str, Session] = {}
        self.total_sessions = 0
        self.chunk_latency_s: collections.deque[float] = collections.deque(maxlen=5000)
        self.audio_s = 0.0
        self.started = time.time()
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.ready = threading.Event()
        self.port: int | None = None

    # -- models ---------------------------------------------------------------------------
    def model(self, name: str | None) -> Any:
        from ..registry import load

        name = name or self.config.default_model
        if self.config.allowed_models is not None and name not in self.config.allowed_models:
            raise ProtocolError("bad_hello", f"model {name!r} is not served here; choose one of {', '.join(self.config.allowed_models)}")
        with self._model_lock:
            if name not in self._models:
                try:
                    self._models[name] = load(name, self.config.weights.get(name))
                except CodecStreamError as exc:
                    raise ProtocolError("bad_hello", f"cannot load model {name!r}: {exc}") from None
            return self._models[name]

    # -- HTTP -----------------------------------------------------------------------------
    def _authorized(self, path: str, headers: Any) -> bool:
        if self.config.token is None:
            return True
        supplied = (parse_qs(urlparse(path).query).get("token") or [""])[0]
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            supplied = authorization[len("Bearer ") :]
        return hmac.compare_digest(supplied.encode(), self.config.token.encode())

    def metrics(self) -> dict[str, Any]:
        latencies = sorted(self.chunk_latency_s)
        pick = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0  # noqa: E731
        uptime = time.time() - self.started
        return {
            "sessions": len(self.sessions),
            "sessions_total": self.total_sessions,
            "models_loaded": sorted(self._models),
            "queue_depth": self.worker.depth(),
            "chunk_latency_p50_ms": pick(0.5),
            "chunk_latency_p99_ms": pick(0.99),
            "audio_seconds": self.audio_s,
            "compute_seconds": self.worker.busy_s,
            "rtf": self.worker.busy_s / self.audio_s if self.audio_s else 0.0,
            "uptime_seconds": uptime,
        }

    async def _process_request(self, connection: Any, request: Any) -> Any:
        path = urlparse(request.path).path
        if path == "/ws":
            if not self._authorized(request.path, request.headers):
                return connection.respond(401, "missing or wrong bearer token\n")
            return None
        if path == "/health":
            body = json.dumps({"status": "ok", "sessions": len(self.sessions), "max_sessions": self.config.max_sessions})
            return self._json_response(connection, body)
        if path == "/metrics":
            return self._json_response(connection, json.dumps(self.metrics()))
        if path == "/models":  # what the browser client needs to open its AudioContext
            name = (parse_qs(urlparse(request.path).query).get("model") or [None])[0]
            try:
                model = await asyncio.get_running_loop().run_in_executor(None, self.model, name)
            except ProtocolError as exc:
                return self._json_response(connection, json.dumps({"error": str(exc)}))
            info = {"model": model.name, "sample_rate": model.sample_rate, "hop_length": model.hop_length, "channels": model.channels}
            return self._json_response(connection, json.dumps(info))
        if path in _STATIC:
            name, content_type = _STATIC[path]
            text = (resources.files("codecstream.server") / "static" / name).read_text()
            text = text.replace("__DEFAULT_MODEL__", self.config.default_model)
            return self._typed(connection.respond(200, text), content_type)
        return connection.respond(404, "not found\n")

    @staticmethod
    def _typed(response: Any, content_type: str) -> Any:
        del response.headers["Content-Type"]  # websockets' Headers append; replace text/plain
        response.headers["Content-Type"] = content_type
        return response

    def _json_response(self, connection: Any, body: str) -> Any:
        return self._typed(connection.respond(200, body + "\n"), "application/json")

    # -- WebSocket sessions ---------------------------------------------------------------
    async def _handler(self, websocket: Any) -> None:
        protocol = Protocol(max_message_bytes=self.config.max_message_bytes)
        session: Session | None = None
        try:
            first = await asyncio.wait_for(websocket.recv(), self.config.idle_timeout_s)
            # Refused after its hello, not before: a client still sending the hello would find
            # the socket closed under it instead of reading why.
            if len(self.sessions) >= self.config.max_sessions:
                raise ProtocolError("server_busy", f"the server is at its limit of {self.config.max_sessions} sessions")
            hello = protocol.receive(first)
            if not isinstance(hello, Hello):
                raise ProtocolError("unexpected", "the first message must be a hello")
            model = await asyncio.get_running_loop().run_in_executor(None, self.model, hello.model)
            session = await self.worker.submit(lambda: Session(model, hello))
            self.sessions[session.id] = session
            self.total_sessions += 1
            await websocket.send(protocol.ready(session.ready()))
            await self._serve_session(websocket, protocol, session)
        except ProtocolError as exc:
            await self._fail(websocket, exc.code, str(exc))
        except asyncio.TimeoutError:
            await self._fail(websocket, "idle_timeout", f"no message for {self.config.idle_timeout_s:.0f} s")
        except CodecStreamError as exc:  # a model rejecting codes or audio
            await self._fail(websocket, _error_code(exc), f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # the client vanished, or sends stalled: end this session only
            if not _is_disconnect(exc):
                await self._fail(websocket, "internal", f"{type(exc).__name__}: {exc}")
        finally:
            if session is not None:
                self.sessions.pop(session.id, None)

    async def _serve_session(self, websocket: Any, protocol: Protocol, session: Session) -> None:
        inbox: asyncio.Queue = asyncio.Queue(maxsize=self.config.queue_chunks)
        recorder = _Recorder(self.config.record_dir, session) if self.config.record_dir else None
        closed = asyncio.ensure_future(websocket.wait_closed())
        sender = asyncio.create_task(self._process_inbox(websocket, protocol, session, inbox, recorder, closed))
        try:
            while True:
                reader = asyncio.ensure_future(websocket.recv())
                done, _ = await asyncio.wait({reader, sender}, timeout=self.config.idle_timeout_s, return_when=asyncio.FIRST_COMPLETED)
                if sender in done:  # the processing side ended (error or end sent)
                    reader.cancel()
                    sender.result()
                    return
                if not done:
                    reader.cancel()
                    raise asyncio.TimeoutError
                event = protocol.receive(reader.result())
                if not isinstance(event, (Audio, Codes, End)):
                    raise ProtocolError("unexpected", f"unexpected {type(event).__name__} during a session")
                # A full inbox stops the reading (backpressure), but not the watch for a
                # vanished client or a failed sender.
                put = asyncio.ensure_future(inbox.put((time.perf_counter(), event)))
                done, _ = await asyncio.wait({put, sender, closed}, return_when=asyncio.FIRST_COMPLETED)
                if put not in done:
                    put.cancel()
                    if sender in done:
                        sender.result()
                    return
                if isinstance(event, End):
                    await sender
                    return
        finally:
            for task in (sender, closed):
                if not task.done():
                    task.cancel()
            if recorder is not None:
                recorder.close()

    async def _process_inbox(
        self, websocket: Any, protocol: Protocol, session: Session, inbox: asyncio.Queue, recorder: Any, closed: asyncio.Future
    ) -> None:
        while True:
            received, event = await inbox.get()
            if closed.done():  # the client is gone: stop spending compute on it
                return
            if isinstance(event, Audio):
                if recorder:
                    recorder.input(event.samples)
                outputs = await self.worker.submit(lambda e=event: session.process_audio(e.samples))
                self.audio_s += len(event.samples) / session.hello.sample_rate
            elif isinstance(event, Codes):
                outputs = await self.worker.submit(lambda e=event: session.process_codes(e.levels))
                self.audio_s += 0.0
            else:  # End: flush, send the rest, say end
                outputs = await self.worker.submit(session.finish)
                await self._send_outputs(websocket, protocol, outputs, recorder)
                await asyncio.wait_for(websocket.send(protocol.stats(self._session_stats(session))), self.config.send_timeout_s)
                await asyncio.wait_for(websocket.send(protocol.end()), self.config.send_timeout_s)
                await websocket.close()
                return
            await self._send_outputs(websocket, protocol, outputs, recorder)
            self.chunk_latency_s.append(time.perf_counter() - received)

    async def _send_outputs(self, websocket: Any, protocol: Protocol, outputs: list[tuple[str, Any]], recorder: Any) -> None:
        for kind, payload in outputs:
            message = protocol.audio(payload) if kind == "audio" else protocol.codes(payload)
            if recorder and kind == "audio":
                recorder.output(payload)
            # A client that never reads fills its buffers; it is dropped, the others go on.
            await asyncio.wait_for(websocket.send(message), self.config.send_timeout_s)

    def _session_stats(self, session: Session) -> dict[str, Any]:
        return {"session": session.id, "audio_seconds_in": session.audio_in_s}

    @staticmethod
    async def _fail(websocket: Any, code: str, message: str) -> None:
        try:
            await asyncio.wait_for(websocket.send(Protocol.error(code, message)), 2.0)
            await asyncio.wait_for(websocket.close(1008 if code not in ("server_busy", "internal") else 1013, code[:100]), 2.0)
        except Exception:  # the peer is gone: nothing more to tell it
            pass

    # -- lifecycle ------------------------------------------------------------------------
    async def serve(self) -> None:
        """Serve until :meth:`stop`; then close every session with 1001 (going away)."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # The allow-list guards against other web pages; programs send no Origin and pass (None).
        origins = [*self.config.allowed_origins, None] if self.config.allowed_origins is not None else None
        async with serve(
            self._handler,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_message_bytes,
            max_queue=4,
            origins=origins,
            ping_interval=20,
            ping_timeout=20,
        ) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self.ready.set()
            await self._stopping.wait()
            server.close(close_connections=True)
            await server.wait_closed()

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile: nothing left to stop
                pass


class _Recorder:
    """Writes a session's input and output audio (``record_dir``), for debugging and tests."""

    def __init__(self, directory: Path, session: Session) -> None:
        import soundfile

        directory.mkdir(parents=True, exist_ok=True)
        rate, channels = session.hello.sample_rate, session.hello.channels
        self.files = [
            soundfile.SoundFile(str(directory / f"{session.id}-input.wav"), "w", rate, channels, subtype="FLOAT"),
            soundfile.SoundFile(str(directory / f"{session.id}-output.wav"), "w", rate, channels, subtype="FLOAT"),
        ]

    def input(self, samples: Any) -> None:
        self.files[0].write(samples)

    def output(self, samples: Any) -> None:
        self.files[1].write(samples)

    def close(self) -> None:
        for handle in self.files:
            handle.close()


def _error_code(exc: CodecStreamError) -> str:
    name = type(exc).__name__
    return {"CodeRangeError": "bad_codes", "ShapeError": "bad_codes", "DTypeError": "bad_codes"}.get(name, "bad_input")


def _is_disconnect(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, (ConnectionClosed, ConnectionError, asyncio.CancelledError))


def run_server(config: ServerConfig, *, on_ready: Callable[[Server], None] | None = None) -> None:
    """Run the server until SIGTERM or Ctrl-C: the event loop on a thread, compute on this
    (main) thread."""
    worker = ComputeWorker()
    server = Server(config, worker)
    stop = threading.Event()

    def loop_thread() -> None:
        try:
            asyncio.run(server.serve())
        finally:
            stop.set()

    thread = threading.Thread(target=loop_thread, name="codecstream-server-loop", daemon=True)
    thread.start()

    def terminate(signum: int, frame: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    if server.ready.wait(30) and on_ready is not None:
        on_ready(server)
    try:
        worker.run_forever(stop)
    finally:
        server.stop()
        thread.join(timeout=10)


