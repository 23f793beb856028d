"""``codecstream serve``: many WebSocket sessions on shared models, compute off the event loop.

The asyncio side (websockets) only parses messages, queues work and sends results. Model
compute runs on one compute thread (:class:`ComputeWorker`) that serves sessions in turns of
bounded work, so a slow model never blocks the event loop, a long message never starves the
other sessions, and one session's error never reaches another. Per-session inboxes are bounded
in bytes: when one is full the server stops reading that socket, and TCP pushes back on that
client alone.

Everything a client controls is bounded before work is done (see the README's "Security"
section): the hello must come within ``hello_timeout_s``; connections still waiting for one are
capped; the session limit is taken atomically; options are checked against the model's typed
schema; each message carries at most ``max_message_ms`` of audio or codes; a client that stops
reading is disconnected (TCP included) after ``send_timeout_s``.

HTTP on the same port: ``/`` (the browser client), ``/health`` (open, reveals nothing),
``/models``, ``/metrics`` and ``/replay`` (a TTS token stream for the page; token and Origin
checked like ``/ws``); WebSockets on ``/ws``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hmac
import ipaddress
import json
import logging
import os
import queue
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol as TypingProtocol
from urllib.parse import parse_qs, urlparse

import numpy as np

from ..errors import (
    ChannelError,
    CheckpointError,
    CodecStreamError,
    CodeRangeError,
    ConfigError,
    DTypeError,
    NonFiniteError,
    OptionError,
    SampleRateError,
    ShapeError,
    StreamStateError,
    UnknownModelError,
)
from ..options import WINDOWED_OPTIONS, schema_json
from ..runtime.scheduler import GroupScheduler
from .protocol import Audio, Codes, End, Hello, Protocol, ProtocolError, Ready
from .session import Outgoing, Session, SessionLimits, wire_form

if TYPE_CHECKING:
    from websockets.asyncio.server import Server as WebSocketServer
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from ..plugin import Codec

__all__ = ["ServerConfig", "Server", "ServerThreads", "ComputeWorker", "RequestHeaders", "run_server"]

log = logging.getLogger("codecstream.server")


class RequestHeaders(TypingProtocol):
    """What the request checks read of a request's headers (websockets' ``Headers``, or a
    gateway's adapter of another server's)."""

    def get(self, name: str, /) -> str | None: ...

    def get_all(self, name: str, /) -> list[str]: ...

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/views.js": ("views.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/playback-worklet.js": ("playback-worklet.js", "text/javascript; charset=utf-8"),
}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass
class ServerConfig:
    """Server settings, grouped by topic. :meth:`validate` refuses unsafe combinations."""

    # Network
    host: str = "127.0.0.1"
    port: int = 8765
    # Models: loaded at start; sessions may ask only for these
    default_model: str = "hifigan-universal"
    models: tuple[str, ...] = ()  # served besides the default model
    weights: dict[str, str] = field(default_factory=dict)  # model name -> weights argument
    load_on_request: bool = False  # also load, on a client's request, models whose weights are configured
    # Limits
    max_sessions: int = 32
    max_pending_connections: int = 64  # connections that have not sent their hello yet
    hello_timeout_s: float = 5.0
    max_message_bytes: int = 256 * 1024
    max_message_ms: float = 1000.0  # audio or codes per message
    turn_ms: float = 100.0  # audio computed per turn of the compute thread
    max_queued_bytes: int = 2 << 20  # decoded input waiting per session
    idle_timeout_s: float = 30.0
    send_timeout_s: float = 10.0
    # Compute
    compute_threads: int | None = None  # torch threads of the compute thread (None: all cores but one)
    dtype: str = "float32"  # the models' precision: float32, or bfloat16 (faster on CPUs with BF16)
    device: str = "cpu"  # where the models run ("cuda" on a GPU machine)
    batching: bool = False  # sessions of one model and options share one forward pass per tick (opt-in, see README)
    tick_ms: float = 20.0  # with batching: how long a block may wait for its tick
    max_backlog_ms: float = 1000.0  # with batching: input a session may queue before reading stops
    warm_up: bool = True  # run each model's streams once at load, before the first session
    # Identity: the replica name the ready message carries (``serve --ray``; None: not sent)
    replica_name: str | None = None
    # Security
    token: str | None = None
    allowed_origins: tuple[str, ...] | None = None  # None: only the page this server serves; "*": any
    # Debugging
    record_dir: Path | None = None  # write each session's input and output audio here (files 0600)
    record_max_bytes: int = 64 << 20  # per session and direction; recording stops there

    @property
    def served_models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.default_model, *self.models)))

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)

    def validate(self) -> None:
        """Raise :class:`~codecstream.errors.ConfigError` for settings that cannot work or that
        would expose the server: an empty token, a non-loopback address without a token."""
        if self.token is not None and not self.token.strip():
            raise ConfigError("the token is empty: give a real secret, or no --token on a loopback address")
        if not self.loopback and self.token is None:
            raise ConfigError(f"binding {self.host} makes the server reachable from other machines: it needs --token")
        for name in ("max_sessions", "max_pending_connections", "max_message_bytes", "max_queued_bytes", "record_max_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.dtype not in ("float32", "float64", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be float32, bfloat16, float16 or float64, got {self.dtype!r}")
        if self.compute_threads is not None and self.compute_threads < 1:
            raise ConfigError(f"compute_threads must be positive, got {self.compute_threads}")
        for name in ("hello_timeout_s", "max_message_ms", "turn_ms", "idle_timeout_s", "send_timeout_s", "tick_ms", "max_backlog_ms"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def limits(self) -> SessionLimits:
        return SessionLimits(max_message_ms=self.max_message_ms, turn_ms=self.turn_ms, max_message_bytes=self.max_message_bytes)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Job:
    __slots__ = ("call", "turns", "on_turn", "future", "loop")

    def __init__(self, call: Callable[[], Any], future: asyncio.Future, loop: asyncio.AbstractEventLoop, on_turn: Callable[[Any], None] | None) -> None:
        self.call: Callable[[], Any] | None = call
        self.turns: Iterator[Any] | None = None
        self.on_turn = on_turn  # None: a plain job, whose result settles the future
        self.future, self.loop = future, loop


class ComputeWorker:
    """Runs jobs for the event loop on one thread (the main thread under ``codecstream serve``:
    torch's CPU threads serve their creating thread best).

    A job submitted with :meth:`submit_turns` returns an iterator of turns; the worker runs one
    turn, hands its result to the event loop at once, then puts the job back at the end of the
    queue, so sessions take turns (round robin), each turn's work is bounded by the session
    (``turn_ms`` of audio), and a long job's first output leaves before its last is computed."""

    def __init__(self, scheduler: GroupScheduler | None = None) -> None:
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self.busy_s = 0.0
        self.turns = 0
        #: Stream groups ticked between jobs (see :mod:`codecstream.runtime.scheduler`).
        self.scheduler = scheduler
        self.tick_errors = 0

    def submit(self, job: Callable[[], Any]) -> asyncio.Future:
        """Run ``job()`` once; the future gets its result."""
        return self._put(job, None)

    def submit_turns(self, job: Callable[[], Iterator[Any]], on_turn: Callable[[Any], None]) -> asyncio.Future:
        """Run ``job()`` (checks, may raise), then its turns, interleaved with other jobs;
        ``on_turn(result)`` runs on the event loop after each turn, in order, and the future
        settles (None, or the error) after the last one."""
        return self._put(job, on_turn)

    def _put(self, call: Callable[[], Any], on_turn: Callable[[Any], None] | None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(call, future, loop, on_turn))
        return future

    def depth(self) -> int:
        return self._jobs.qsize()

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            scheduler = self.scheduler
            if scheduler is not None and scheduler.due():
                self._tick(scheduler)
                # Jobs (every session's input) get their share after each tick, even when ticks
                # run back to back: one job per tick would leave a real-time session's input
                # queued behind everyone's (measured: 0.4 s gaps under the adversarial test).
                self._run_jobs(time.perf_counter() + scheduler.tick_s / 2)
                continue
            wait = 0.1 if scheduler is None else min(0.1, scheduler.wait_s())
            try:
                job = self._jobs.get(timeout=wait) if wait > 0 else self._jobs.get_nowait()
            except queue.Empty:
                continue
            if job is None:
                break
            self._run_job(job)

    def _run_jobs(self, until: float) -> None:
        """Jobs waiting now, one turn each, until ``until`` or the queue is empty."""
        while time.perf_counter() < until:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._jobs.put(None)  # the stop signal, for run_forever
                return
            self._run_job(job)

    def _run_job(self, job: _Job) -> None:
        if job.future.done():  # its session ended (cancelled): drop the remaining turns
            return
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            done, result = self._step(job)
        except BaseException as exc:  # delivered to the session that asked, nowhere else
            done, result, error = True, None, exc
        spent = time.perf_counter() - started
        self.busy_s += spent
        self.turns += 1
        if spent > 0.25:  # a turn this long delays every session's next output
            log.warning("a compute turn took %.0f ms (%s)", 1000 * spent, getattr(job.call or job.turns, "__qualname__", type(job.turns).__name__))
        if done:
            _call_soon(job.loop, _settle, job.future, result, error)
        else:
            self._jobs.put(job)  # back of the queue: the other sessions go first

    def _tick(self, scheduler: GroupScheduler) -> None:
        """One tick of every stream group. Inputs are checked when pushed, so a tick does not
        fail on a client's data; if it fails anyway, it is logged and the groups go on."""
        started = time.perf_counter()
        try:
            scheduler.tick()
        except Exception:
            self.tick_errors += 1
            log.exception("a stream-group tick failed")
        self.busy_s += time.perf_counter() - started

    @staticmethod
    def _step(job: _Job) -> tuple[bool, Any]:
        """One turn of ``job``: ``(finished, result)``."""
        if job.call is not None:
            call, job.call = job.call, None
            result = call()
            if job.on_turn is None:
                return True, result
            job.turns = iter(result)
        try:
            output = next(job.turns)  # type: ignore[arg-type]
        except StopIteration:
            return True, None
        _call_soon(job.loop, job.on_turn, output)  # type: ignore[arg-type]
        return False, None

    def close(self) -> None:
        self._jobs.put(None)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the event loop closed meanwhile (shutdown): nobody is waiting
        pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Inbox:
    """A session's queue of received events, bounded in bytes: ``put`` waits while it is full
    (one event is always accepted, so a message as large as the limit still gets through)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self.bytes = 0
        self._changed = asyncio.Event()  # one reader and one writer share it; both re-check

    async def put(self, item: Any, size: int) -> None:
        while self._items and self.bytes + size > self.max_bytes:
            self._changed.clear()
            await self._changed.wait()
        self._items.append((item, size))
        self.bytes += size
        self._changed.set()

    async def get(self) -> Any:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item, size = self._items.popleft()
        self.bytes -= size
        self._changed.set()
        return item

    def pop_audio(self, max_samples: int) -> np.ndarray | None:
        """The samples of the next event if it is audio of at most ``max_samples``; else None."""
        if not self._items:
            return None
        (_, event), size = self._items[0]
        if not isinstance(event, Audio) or len(event.samples) > max_samples:
            return None
        self._items.popleft()
        self.bytes -= size
        self._changed.set()
        return event.samples


class Server:
    """The server: ``serve()`` runs the event loop (in a thread when ``compute`` is driven by
    the caller, see ``codecstream serve``); ``stop()`` closes sessions gracefully."""

    def __init__(self, config: ServerConfig, worker: ComputeWorker | None = None) -> None:
        config.validate()
        self.config = config
        self.worker = worker or ComputeWorker()
        if config.batching and self.worker.scheduler is None:
            self.worker.scheduler = GroupScheduler(config.tick_ms)
        self.scheduler = self.worker.scheduler if config.batching else None
        self._models: dict[str, Codec] = {}
        self._model_lock = threading.Lock()
        self.sessions: dict[str, Session] = {}
        self._reserved = 0  # session slots taken by hellos still being set up
        self.pending_connections = 0  # connections that have not sent their hello
        self.total_sessions = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.chunk_latency_s: collections.deque[float] = collections.deque(maxlen=5000)
        self.audio_s = 0.0
        self.started = time.time()
        self._server: WebSocketServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.ready = threading.Event()
        self.port: int | None = None

    # -- models ---------------------------------------------------------------------------
    def load_models(self) -> None:
        """Load every served model (before the server listens)."""
        for name in self.config.served_models:
            self._load(name)

    def _load(self, name: str) -> "Codec":
        import torch

        from ..registry import load
        from ..warmup import warm_up

        with self._model_lock:
            if name not in self._models:
                model = load(name, self.config.weights.get(name), device=self.config.device, dtype=getattr(torch, self.config.dtype))
                if self.config.warm_up:
                    warm_up(model)  # the first session's first output then costs a later one's
                self._models[name] = model
            return self._models[name]

    def model(self, name: str | None) -> "Codec":
        """A served model by name (None: the default). Loads nothing unless ``load_on_request``
        is set and the model's weights are configured (a client never causes a download).

        Raises:
            ProtocolError: ``bad_hello`` for a model not served here.
        """
        name = name or self.config.default_model
        loaded = self._models.get(name)
        if loaded is not None:
            return loaded
        if name in self.config.served_models or (self.config.load_on_request and name in self.config.weights):
            try:
                return self._load(name)
            except UnknownModelError:
                pass
            except CodecStreamError as exc:
                log.warning("cannot load model %r: %s", name, exc)
                raise ProtocolError("model_unavailable", f"model {name!r} cannot be loaded on this server") from None
        raise ProtocolError("bad_hello", f"model {name[:60]!r} is not served here; choose one of {', '.join(self.config.served_models)}")

    def model_info(self, model: "Codec") -> dict[str, Any]:
        directions = ["audio->audio"]
        if wire_form(model) is not None:
            if model.has_encoder and model.streaming_encoder:
                directions.insert(0, "audio->codes")
            directions.insert(1, "codes->audio")
        elif not (model.has_encoder and model.streaming_encoder):
            directions = []
        mode, *windowed = WINDOWED_OPTIONS
        if not model.exact_decoder:  # NeuCodec: a stream must ask for the windowed mode
            mode = dataclasses.replace(mode, choices=("windowed",))
        options = [*model.option_specs(), mode, *windowed]
        return {
            "model": model.name, "sample_rate": model.sample_rate, "hop_length": model.hop_length,
            "channels": model.channels, "frame_rate": model.frame_rate, "directions": directions,
            "options": schema_json(options), "default": model.name == self.config.default_model,
        }

    # -- HTTP -----------------------------------------------------------------------------
    def _authorized(self, path: str, headers: RequestHeaders) -> bool:
        if self.config.token is None:
            return True
        supplied = (parse_qs(urlparse(path).query).get("token") or [""])[0]
        authorization = headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            supplied = authorization[len("Bearer ") :]
        return hmac.compare_digest(supplied.encode(), self.config.token.encode())

    def _host_allowed(self, headers: RequestHeaders) -> bool:
        """On a loopback address, only loopback host names: a page whose name was rebound to
        127.0.0.1 (DNS rebinding) sends its own name and is refused."""
        if not self.config.loopback:
            return True
        host = headers.get("Host") or ""
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        return name.lower() in _LOOPBACK_NAMES

    def _origin_allowed(self, headers: RequestHeaders) -> bool:
        """Programs send no Origin and pass (the token guards them); browsers send one, which must
        be the page this server serves unless ``allowed_origins`` names it (or is ``*``)."""
        origin = headers.get("Origin")
        if origin is None:
            return True
        allowed = self.config.allowed_origins
        if allowed is not None:
            return "*" in allowed or origin in allowed
        host = headers.get("Host") or ""
        return bool(host) and origin in (f"http://{host}", f"https://{host}")

    def metrics(self) -> dict[str, Any]:
        latencies = sorted(self.chunk_latency_s)
        pick = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0  # noqa: E731
        uptime = time.time() - self.started
        return {
            "sessions": len(self.sessions),
            "sessions_total": self.total_sessions,
            "pending_connections": self.pending_connections,
            "models_loaded": sorted(self._models),
            "queue_depth": self.worker.depth(),
            "chunk_latency_p50_ms": pick(0.5),
            "chunk_latency_p99_ms": pick(0.99),
            "audio_seconds": self.audio_s,
            "compute_seconds": self.worker.busy_s,
            "compute_turns": self.worker.turns,
            "rtf": self.worker.busy_s / self.audio_s if self.audio_s else 0.0,
            "errors": dict(self.errors),
            "uptime_seconds": uptime,
            "batching": self.scheduler is not None,
            "groups": self.scheduler.stats() if self.scheduler is not None else [],
        }

    def refusal(self, target: str, headers: RequestHeaders) -> tuple[int, str] | None:
        """The checks every request but ``/health`` passes (one Host, Origin and Authorization
        header; loopback names on a loopback address; for ``/ws``, ``/models``, ``/metrics`` and
        ``/replay`` the Origin and the token): the HTTP status and text to refuse ``target`` (path and
        query) with, or None. ``headers`` needs ``get`` and ``get_all``; a gateway in front of
        replicas (``serve --ray``) runs the same checks."""
        path = urlparse(target).path
        if any(len(headers.get_all(name)) > 1 for name in ("Host", "Origin", "Authorization")):
            return 400, "repeated Host, Origin or Authorization header\n"
        if not self._host_allowed(headers):
            return 403, "this server answers to its loopback names only\n"
        if path in _STATIC:
            return None
        if path not in ("/ws", "/models", "/metrics", "/replay"):
            return 404, "not found\n"
        if not self._origin_allowed(headers):
            return 403, "this Origin may not use the server (see --allow-origin)\n"
        if not self._authorized(target, headers):
            return 401, "missing or wrong bearer token\n"
        return None

    def static_file(self, path: str) -> tuple[str, str] | None:
        """The browser client's files (they hold no secret; the page asks for the token itself):
        ``(text, content type)``, or None for other paths."""
        if path not in _STATIC:
            return None
        name, content_type = _STATIC[path]
        text = (resources.files("codecstream.server") / "static" / name).read_text()
        return text.replace("__DEFAULT_MODEL__", self.config.default_model), content_type

    async def _process_request(self, connection: "ServerConnection", request: "Request") -> "Response | None":
        path = urlparse(request.path).path
        if path == "/health":  # for load balancers: open, and says nothing else
            return self._json_response(connection, json.dumps({"status": "ok"}))
        refused = self.refusal(request.path, request.headers)
        if refused is not None:
            return connection.respond(*refused)
        static = self.static_file(path)
        if static is not None:
            return self._typed(connection.respond(200, static[0]), static[1])
        if path == "/ws":
            return None
        if path == "/metrics":
            return self._json_response(connection, json.dumps(self.metrics()))
        if path == "/replay":
            return self._json_response(connection, json.dumps(await self.replay(request.path)))
        # /models: the served models, or one of them (?model=): what a client needs for its hello
        asked = parse_qs(urlparse(request.path).query).get("model")
        wanted = asked[0] if asked else None
        body: dict[str, Any]
        if wanted is None:
            body = {"default": self.config.default_model, "models": [self.model_info(m) for m in self._models.values()]}
        elif wanted in self._models:
            body = self.model_info(self._models[wanted])
        else:
            body = {"error": f"model {wanted[:60]!r} is not served here"}
        return self._json_response(connection, json.dumps(body))

    async def replay(self, target: str) -> dict[str, Any]:
        """``/replay?layout=orpheus|bark&text=...``: a TTS token stream for the browser client
        (:mod:`codecstream.server.replay`), made on the compute thread from a served codec."""
        from .replay import MAX_REPLAY_TEXT, REPLAY_LAYOUTS, replay_messages

        query = parse_qs(urlparse(target).query)
        layout = (query.get("layout") or ["orpheus"])[0]
        text = (query.get("text") or [""])[0][:MAX_REPLAY_TEXT].strip() or "Good morning. Your order has shipped."
        if layout not in REPLAY_LAYOUTS:
            return {"error": f"layout must be one of {', '.join(REPLAY_LAYOUTS)}"}
        model = self._models.get(REPLAY_LAYOUTS[layout])
        if model is None:
            return {"error": f"the {layout} layout needs {REPLAY_LAYOUTS[layout]}, which this server does not serve"}
        try:
            return dict(await self.worker.submit(lambda: replay_messages(model, layout, text)))
        except CodecStreamError as exc:  # no speech synthesiser here
            return {"error": f"{type(exc).__name__}: {exc}"}

    @staticmethod
    def _typed(response: "Response", content_type: str) -> "Response":
        del response.headers["Content-Type"]  # websockets' Headers append; replace text/plain
        response.headers["Content-Type"] = content_type
        return response

    def _json_response(self, connection: "ServerConnection", body: str) -> "Response":
        return self._typed(connection.respond(200, body + "\n"), "application/json")

    # -- WebSocket sessions ---------------------------------------------------------------
    async def _handler(self, websocket: "ServerConnection") -> None:
        if self.pending_connections >= self.config.max_pending_connections:
            self.errors["server_busy"] += 1
            await self._fail(websocket, "server_busy", "too many connections are waiting to start a session")
            return
        protocol = Protocol(max_message_bytes=self.config.max_message_bytes)
        _limit_send_buffer(websocket)
        session: Session | None = None
        reserved = False

        def release() -> None:  # before any closing handshake: a slot is not held for it
            nonlocal reserved
            if reserved:
                self._reserved -= 1
                reserved = False
            if session is not None:
                self.sessions.pop(session.id, None)

        try:
            self.pending_connections += 1
            try:
                first = await asyncio.wait_for(websocket.recv(), self.config.hello_timeout_s)
            except asyncio.TimeoutError:
                raise ProtocolError("hello_timeout", f"no hello within {self.config.hello_timeout_s:g} s") from None
            finally:
                self.pending_connections -= 1
            hello = protocol.receive(first)
            if not isinstance(hello, Hello):
                raise ProtocolError("unexpected", "the first message must be a hello")
            # Check and take a slot with no await in between: concurrent hellos cannot overshoot.
            if len(self.sessions) + self._reserved >= self.config.max_sessions:
                raise ProtocolError("server_busy", f"the server is at its limit of {self.config.max_sessions} sessions")
            self._reserved += 1
            reserved = True
            model = self._models.get(hello.model or self.config.default_model)
            if model is None:  # not loaded: refused at once, or loaded off the loop if allowed
                model = await asyncio.get_running_loop().run_in_executor(None, self.model, hello.model) if self.config.load_on_request else self.model(hello.model)
            limits = self.config.limits()
            scheduler = self.scheduler
            session, ready = await self.worker.submit(lambda: _open_session(model, hello, protocol, limits, scheduler))
            self.sessions[session.id] = session
            self._reserved -= 1
            reserved = False
            self.total_sessions += 1
            if self.config.replica_name:
                ready = dataclasses.replace(ready, replica=self.config.replica_name)
            await self._send(websocket, protocol.ready(ready))
            await self._serve_session(websocket, protocol, session)
            release()
        except Exception as exc:
            release()
            await self._end_with_error(websocket, exc, session)
        finally:
            release()

    async def _end_with_error(self, websocket: "ServerConnection", exc: Exception, session: Session | None) -> None:
        if _is_disconnect(exc):  # the client vanished, or sends stalled: end this session only
            _abort(websocket)
            return
        code, message = _error_for(exc, session)
        self.errors[code] += 1
        if code == "internal":
            log.error("session %s: internal error", session.id if session else "-", exc_info=exc)
        await self._fail(websocket, code, message)

    async def _serve_session(self, websocket: "ServerConnection", protocol: Protocol, session: Session) -> None:
        inbox = _Inbox(max(self.config.max_queued_bytes, 2 * self.config.max_message_bytes))
        recorder = _Recorder(self.config.record_dir, session, self.config.record_max_bytes) if self.config.record_dir else None
        closed = asyncio.ensure_future(websocket.wait_closed())
        sender = asyncio.create_task(self._process_inbox(websocket, session, inbox, recorder, closed))
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
                    raise ProtocolError("idle_timeout", f"no message for {self.config.idle_timeout_s:g} s")
                event = protocol.receive(reader.result())
                if not isinstance(event, (Audio, Codes, End)):
                    raise ProtocolError("unexpected", f"unexpected {type(event).__name__} during a session")
                size = event.samples.nbytes if isinstance(event, Audio) else sum(level.nbytes for level in event.levels) if isinstance(event, Codes) else 0
                # A full inbox stops the reading (backpressure), but not the watch for a
                # vanished client or a failed sender.
                put = asyncio.ensure_future(inbox.put((time.perf_counter(), event), size))
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

    async def _process_inbox(self, websocket: "ServerConnection", session: Session, inbox: _Inbox, recorder: "_Recorder | None", closed: asyncio.Future) -> None:
        outbox: asyncio.Queue[Outgoing | None] | None = None
        sender: asyncio.Task | None = None
        if session.grouped:  # outputs come from the ticks, in order, through the outbox
            loop, outbox = asyncio.get_running_loop(), asyncio.Queue()
            session.deliver = lambda out: _call_soon(loop, outbox.put_nowait, out)  # type: ignore[union-attr]
            sender = asyncio.create_task(self._send_outbox(websocket, outbox, recorder))
        try:
            await self._consume_inbox(websocket, session, inbox, recorder, closed, outbox, sender)
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
            elif sender is not None and not sender.cancelled():
                sender.exception()  # retrieved: a client that stopped reading is not a server error
            if session.grouped:
                session.deliver = None
                self.worker.submit(session.close)  # its rows leave their groups (no-op after finish)

    async def _consume_inbox(
        self, websocket: "ServerConnection", session: Session, inbox: _Inbox, recorder: "_Recorder | None",
        closed: asyncio.Future, outbox: "asyncio.Queue[Outgoing | None] | None", sender: "asyncio.Task | None",
    ) -> None:
        while True:
            received, event = await inbox.get()
            if closed.done():  # the client is gone: stop spending compute on it
                return
            if sender is not None and sender.done():
                sender.result()  # the client stopped reading: raises
            if isinstance(event, Audio):
                samples = self._merge_audio(session, inbox, event.samples)
                if recorder:
                    recorder.write("input", samples)
                await self._run_turns(websocket, functools.partial(session.process_audio, samples), recorder)
                self.audio_s += len(samples) / session.hello.sample_rate
            elif isinstance(event, Codes):
                await self._run_turns(websocket, functools.partial(session.process_codes, event.levels), recorder)
            else:  # End: flush, send the rest, say end
                outputs = await self.worker.submit(session.finish)
                if outbox is not None and sender is not None:  # after every tick's output
                    outbox.put_nowait(outputs)
                    outbox.put_nowait(None)
                    await sender
                else:
                    await self._send_outputs(websocket, outputs, recorder)
                await self._send(websocket, Protocol.stats(self._session_stats(session)))
                await self._send(websocket, Protocol.end())
                await self._close(websocket, 1000, "")
                return
            self.chunk_latency_s.append(time.perf_counter() - received)
            # Backpressure: while the ticks have not caught up, stop taking input (the inbox
            # fills, reading stops, and TCP pushes back on the client).
            while session.backlog_s * 1000 > self.config.max_backlog_ms and not closed.done():
                await asyncio.sleep(self.config.tick_ms / 1000)

    async def _send_outbox(self, websocket: "ServerConnection", outbox: "asyncio.Queue[Outgoing | None]", recorder: "_Recorder | None") -> None:
        while (outputs := await outbox.get()) is not None:
            await self._send_outputs(websocket, outputs, recorder)

    async def _run_turns(self, websocket: "ServerConnection", job: Callable[[], Iterator[Outgoing]], recorder: "_Recorder | None") -> None:
        """Run a session's job on the compute thread, sending each turn's output as it comes."""
        outputs: asyncio.Queue[Outgoing] = asyncio.Queue()
        finished = self.worker.submit_turns(job, outputs.put_nowait)
        try:
            while True:
                if not outputs.empty():
                    await self._send_outputs(websocket, outputs.get_nowait(), recorder)
                elif finished.done():  # every turn's output was queued before it settled
                    finished.result()
                    return
                else:
                    getter = asyncio.ensure_future(outputs.get())
                    await asyncio.wait({getter, finished}, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        await self._send_outputs(websocket, getter.result(), recorder)
                    else:
                        getter.cancel()
        finally:
            finished.cancel()  # no-op when settled; otherwise the worker drops the rest

    @staticmethod
    def _merge_audio(session: Session, inbox: _Inbox, samples: np.ndarray) -> np.ndarray:
        """Join audio messages already waiting (up to one message's limit): one job, not many."""
        pieces, room = [samples], session.max_message_samples() - len(samples)
        while (more := inbox.pop_audio(room)) is not None:
            pieces.append(more)
            room -= len(more)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    async def _send_outputs(self, websocket: "ServerConnection", outputs: Outgoing, recorder: "_Recorder | None") -> None:
        for message, samples in outputs:
            if recorder is not None and samples is not None:
                recorder.write("output", samples)
            await self._send(websocket, message)

    async def _send(self, websocket: "ServerConnection", message: bytes) -> None:
        """Send, or drop the client (TCP included) when it has not read for ``send_timeout_s``."""
        try:
            await asyncio.wait_for(websocket.send(message), self.config.send_timeout_s)
        except asyncio.TimeoutError:
            _abort(websocket)
            raise ConnectionError("the client stopped reading") from None

    async def _close(self, websocket: "ServerConnection", code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(websocket.close(code, reason), self.config.send_timeout_s)
        except Exception:  # a peer that does not take the close frame
            _abort(websocket)

    def _session_stats(self, session: Session) -> dict[str, Any]:
        return {"session": session.id, "audio_seconds_in": session.audio_in_s}

    async def _fail(self, websocket: "ServerConnection", code: str, message: str) -> None:
        """Tell the client why, then close; a peer that takes neither is aborted."""
        try:
            await asyncio.wait_for(websocket.send(Protocol.error(code, message)), 2.0)
            await asyncio.wait_for(websocket.close(1008 if code not in ("server_busy", "internal") else 1013, code[:100]), 2.0)
        except Exception:  # the peer is gone or does not read: nothing more to tell it
            _abort(websocket)

    # -- lifecycle ------------------------------------------------------------------------
    async def serve(self) -> None:
        """Load the served models, then serve until :meth:`stop`; then close every session with
        1001 (going away)."""
        from websockets.asyncio.server import serve

        self.load_models()
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve(
            self._handler,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_message_bytes,
            max_queue=4,
            compression=None,  # deflate would let a few bytes on the wire fill megabytes here
            open_timeout=self.config.hello_timeout_s,
            close_timeout=2,
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


def _open_session(model: "Codec", hello: Hello, protocol: Protocol, limits: SessionLimits, scheduler: GroupScheduler | None = None) -> tuple[Session, Ready]:
    """On the compute thread: streams are built and their latency derived there, never on the
    event loop."""
    session = Session(model, hello, protocol, limits, scheduler)
    return session, session.ready()


class _Recorder:
    """Writes a session's input and output audio (``record_dir``) on a thread of its own, at most
    ``max_bytes`` per direction, in files only the server's user can read."""

    def __init__(self, directory: Path, session: Session, max_bytes: int) -> None:
        import soundfile

        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        rate, channels = session.hello.sample_rate, session.hello.channels
        self.files = {}
        for direction in ("input", "output"):
            path = directory / f"{session.id}-{direction}.wav"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # 0600 before any audio
            self.files[direction] = soundfile.SoundFile(str(path), "w", rate, channels, subtype="FLOAT")
        self.remaining = {direction: max_bytes for direction in self.files}
        self.dropped_bytes = 0
        self._queue: queue.Queue[tuple[str, np.ndarray] | None] = queue.Queue(maxsize=256)
        self._thread = threading.Thread(target=self._run, name=f"codecstream-record-{session.id}", daemon=True)
        self._thread.start()

    def write(self, direction: str, samples: np.ndarray) -> None:
        """Queue ``samples`` (never blocks: a full queue or a spent budget drops them)."""
        size = samples.nbytes
        if size > self.remaining[direction]:
            self.remaining[direction] = 0
            self.dropped_bytes += size
            return
        self.remaining[direction] -= size
        try:
            self._queue.put_nowait((direction, samples))
        except queue.Full:
            self.dropped_bytes += size

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            direction, samples = item
            self.files[direction].write(samples)
        for handle in self.files.values():
            handle.close()

    def close(self) -> None:
        self._queue.put(None)  # the thread closes the files after what is queued


def _error_for(exc: BaseException, session: Session | None) -> tuple[str, str]:
    """A stable protocol error code and a message for ``exc``, by its class (never a traceback;
    ``internal`` only for what no rule covers: a bug, logged server-side)."""
    if isinstance(exc, ProtocolError):
        return exc.code, str(exc)[:500]
    codes_session = session is not None and session.direction == "codes->audio"
    rules: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (OptionError, "bad_options"),
        (CodeRangeError, "bad_codes"),
        ((NonFiniteError, ChannelError, SampleRateError), "bad_audio"),
        ((ShapeError, DTypeError), "bad_codes" if codes_session else "bad_audio"),
        (StreamStateError, "bad_stream"),
        (UnknownModelError, "bad_hello"),
        (CheckpointError, "model_unavailable"),
        (CodecStreamError, "bad_input"),
    )
    for kinds, code in rules:
        if isinstance(exc, kinds):
            return code, f"{type(exc).__name__}: {exc}"[:500]
    return "internal", f"internal error (logged as session {session.id if session else '-'})"


#: Kernel send buffer of a session's socket: large enough for 192 kHz stereo float audio, small
#: enough that a client that stops reading blocks the server's sends (and meets the send
#: timeout) before megabytes of audio were computed for it.
SEND_BUFFER_BYTES = 256 * 1024


def _limit_send_buffer(websocket: "ServerConnection") -> None:
    sock = websocket.transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:
            pass


def _abort(websocket: "ServerConnection") -> None:
    """Drop the connection now, with a TCP reset: a plain close would leave the kernel trying
    to deliver the unsent buffer to a peer that does not read, for minutes."""
    sock = websocket.transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # already closed
            pass
    websocket.transport.abort()


def _is_disconnect(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, (ConnectionClosed, ConnectionError, asyncio.CancelledError))


class ServerThreads:
    """A server on threads of its own (event loop, compute), for hosts that keep the main
    thread (a Ray Serve replica). The served models are loaded before it returns; ``close``
    stops it. ``torch``'s thread count is the caller's to set."""

    def __init__(self, config: ServerConfig) -> None:
        self.worker = ComputeWorker(GroupScheduler(config.tick_ms) if config.batching else None)
        self.server = Server(config, self.worker)
        self.server.load_models()
        self._stop = threading.Event()

        def loop() -> None:
            try:
                asyncio.run(self.server.serve())
            finally:
                self._stop.set()

        self._loop = threading.Thread(target=loop, name="codecstream-server-loop", daemon=True)
        self._compute = threading.Thread(target=self.worker.run_forever, args=(self._stop,), name="codecstream-compute", daemon=True)
        self._loop.start()
        self._compute.start()
        if not self.server.ready.wait(60) or self.server.port is None:
            self.close()
            raise ConfigError(f"the server did not start listening on {config.host}:{config.port}")
        self.port: int = self.server.port  # the bound port (config.port may be 0)

    @property
    def alive(self) -> bool:
        """Both threads still run."""
        return self._loop.is_alive() and self._compute.is_alive()

    def close(self, timeout_s: float = 10.0) -> None:
        self.server.stop()
        self._loop.join(timeout_s)
        self._stop.set()
        self._compute.join(timeout_s)


def run_server(config: ServerConfig, *, on_ready: Callable[[Server], None] | None = None) -> None:
    """Run the server until SIGTERM or Ctrl-C: the event loop on a thread, compute on this
    (main) thread. The served models are loaded first."""
    import torch

    # One core is left to the event loop: with every core in torch's pool, the loop waits for a
    # CPU and sessions stall (measured on 2 cores: 7 s gaps with 2 threads, 0.14 s with 1).
    torch.set_num_threads(config.compute_threads or max(1, (os.cpu_count() or 2) - 1))
    worker = ComputeWorker(GroupScheduler(config.tick_ms) if config.batching else None)
    server = Server(config, worker)
    server.load_models()
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
    if server.ready.wait(60) and on_ready is not None:
        on_ready(server)
    try:
        worker.run_forever(stop)
    finally:
        server.stop()
        thread.join(timeout=10)
