"""``codecstream serve --ray``: the service as a Ray Serve application, from a laptop to a cluster.

Two deployments, each its own Serve application (so a rolling update of the replicas never
replaces the gateway that holds the clients' connections):

- ``CodecReplica`` (``--replicas N``, CPUs and GPUs per replica, autoscaling bounds): each replica
  runs the ordinary server (:class:`~codecstream.server.app.ServerThreads`: the loaded models,
  the compute thread, the stream groups) on its node's address, behind a cluster-internal token.
- ``Gateway``, Ray Serve's HTTP and WebSocket ingress: it runs the plain server's request checks
  (token, Origin, Host, repeated headers), serves the browser client, ``/health``, ``/models``
  and ``/metrics`` (summed over the replicas, and each shown), and relays each session's
  WebSocket, message for message, to the least loaded replica for the session's whole life.

The protocol is not re-implemented: bytes pass through the gateway, and each replica speaks it
with the plain server's code. A session whose replica dies gets an ``error`` message
(``replica_failed``) and close code 1011; other sessions do not notice. A replica that is
replaced (a rolling update, a scale-down) stops taking sessions and drains the ones it holds
before it stops (``drain_timeout_s``). Replicas find each other through a small registry actor.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
# run time (through Serve's ingress), and a string annotation makes ``websocket`` a query field.
import asyncio
import dataclasses
import json
import logging
import math
import os
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import ray
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from ray import serve

from ..errors import ConfigError
from .app import Server, ServerConfig, ServerThreads
from .protocol import Protocol

__all__ = ["RayOptions", "deploy", "run_ray", "shutdown", "REGISTRY", "NAMESPACE"]

log = logging.getLogger("codecstream.server.ray")

NAMESPACE = "codecstream"
REGISTRY = "codecstream-registry"
#: A replica that has not reported for this long takes no new sessions.
STALE_S = 5.0
HEARTBEAT_S = 1.0


@dataclass
class RayOptions:
    """How the service is placed on Ray.

    Attributes:
        replicas: model replicas to start with.
        address: an existing cluster (``ray start --head`` / ``"auto"``); None starts a local
            Ray instance that :func:`shutdown` stops again.
        replica_cpus, replica_gpus: resources each replica reserves (its torch threads follow
            the CPUs).
        min_replicas, max_replicas: autoscaling bounds (on when either is set), scaled on
            sessions per replica towards ``target_sessions``.
        drain_timeout_s: how long a replica being replaced keeps serving its live sessions.
        gateways: gateway replicas (each relays its share of the sessions; Ray's proxy spreads
            connections over them).
        app_name: the Serve application of the replicas (a second deploy under it is a rolling
            update); the gateway runs as ``{app_name}-gateway``.
    """

    replicas: int = 1
    address: str | None = None
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_sessions: float = 8.0
    drain_timeout_s: float = 300.0
    gateways: int = 1
    app_name: str = "codecstream"

    def validate(self) -> None:
        if self.replicas < 1 or self.gateways < 1:
            raise ConfigError(f"replicas and gateways must be at least 1, got {self.replicas} and {self.gateways}")
        if self.replica_cpus < 0 or self.replica_gpus < 0:
            raise ConfigError("replica CPUs and GPUs cannot be negative")
        low, high = self.min_replicas or 1, self.max_replicas or max(self.replicas, self.min_replicas or 1)
        if self.autoscaling and not 1 <= low <= high:
            raise ConfigError(f"autoscaling bounds must satisfy 1 <= min <= max, got {low} and {high}")
        if self.drain_timeout_s <= 0 or self.target_sessions <= 0:
            raise ConfigError("drain_timeout_s and target_sessions must be positive")

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None


# -- the registry ---------------------------------------------------------------------------
@ray.remote(num_cpus=0)
class ReplicaRegistry:
    """Where replicas say where they listen and how loaded they are; the gateway reads it.
    It also keeps the cluster-internal token, so every deploy under one name shares it."""

    def __init__(self) -> None:
        self._replicas: dict[str, dict[str, Any]] = {}
        self._token = secrets.token_urlsafe(32)
        self._gateway: dict[str, Any] | None = None  # the settings the running gateway was deployed with
        self._closing = False  # the service is shutting down: replicas stop without draining

    def token(self) -> str:
        return self._token

    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def gateway_config(self) -> dict[str, Any] | None:
        return self._gateway

    def set_gateway_config(self, config: dict[str, Any]) -> None:
        self._gateway = config

    def report(self, name: str, info: dict[str, Any]) -> None:
        self._replicas[name] = {**info, "seen": time.time()}

    def forget(self, name: str) -> None:
        self._replicas.pop(name, None)

    def replicas(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        for name in [n for n, info in self._replicas.items() if now - info["seen"] > 60]:
            del self._replicas[name]  # long gone: a replica that died without saying so
        return {name: {**info, "age_s": now - info["seen"]} for name, info in self._replicas.items()}


def _registry() -> Any:
    registry: Any = ReplicaRegistry  # a Ray actor class (ray.remote adds `options`)
    return registry.options(name=REGISTRY, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()


# -- the model replicas ------------------------------------------------------------------------
class SessionsPolicy:
    """Serve autoscaling policy: enough replicas for the sessions the replicas hold,
    ``target_sessions`` each, within the deployment's bounds."""

    def __init__(self, target_sessions: float = 8.0) -> None:
        self.target_sessions = target_sessions

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        sessions = sum((ctx.aggregated_metrics or {}).get("sessions", {}).values())
        wanted = max(1, math.ceil(sessions / self.target_sessions))
        return max(ctx.capacity_adjusted_min_replicas, min(ctx.capacity_adjusted_max_replicas, wanted)), ctx.policy_state


@serve.deployment(name="CodecReplica")
class CodecReplica:
    """One model replica: the plain server on this node's address, behind the internal token."""

    def __init__(self, config: dict[str, Any], version: str, drain_timeout_s: float, cpus: float) -> None:
        import torch

        self.name = serve.get_replica_context().replica_id.unique_id
        self.version = version
        self.drain_timeout_s = drain_timeout_s
        self.registry = _registry()
        token = ray.get(self.registry.token.remote())
        threads = config.get("compute_threads") or max(1, int(cpus) or 1)
        torch.set_num_threads(threads)
        host = ray.util.get_node_ip_address()
        fields = {**config, "host": host, "port": 0, "token": token, "replica_name": self.name, "allowed_origins": None}
        self.threads = ServerThreads(ServerConfig(**fields))
        self.address = f"{host}:{self.threads.port}"
        self.draining = False
        self._stop = threading.Event()
        self._report()
        self._heartbeat = threading.Thread(target=self._beat, name="codecstream-heartbeat", daemon=True)
        self._heartbeat.start()

    def _sessions(self) -> int:
        server = self.threads.server
        return len(server.sessions) + server.pending_connections

    def _report(self) -> None:
        self.registry.report.remote(self.name, {
            "address": self.address, "version": self.version, "draining": self.draining,
            "sessions": self._sessions(), "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
        })

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._report()

    def check_health(self) -> None:
        if not self.threads.alive:
            raise RuntimeError("the replica's server stopped")

    def record_autoscaling_stats(self) -> dict[str, float]:
        return {"sessions": float(self._sessions())}

    def __del__(self) -> None:
        """Replaced or scaled down: take no new session, finish the live ones, then stop. When
        the whole service shuts down, stop at once (the sessions get 1001, as from the plain
        server on SIGTERM)."""
        self.draining = True
        self._report()
        closing = ray.get(self.registry.closing.remote())
        deadline = time.monotonic() + (0 if closing else self.drain_timeout_s)
        while self._sessions() and time.monotonic() < deadline:
            time.sleep(0.2)
        self._stop.set()
        self.registry.forget.remote(self.name)
        self.threads.close()


# -- the gateway ----------------------------------------------------------------------------------
gateway_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


class _Headers:
    """Starlette headers with the ``get`` / ``get_all`` the server's checks read."""

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def get(self, name: str, /) -> str | None:
        return self._headers.get(name)

    def get_all(self, name: str) -> list[str]:
        return list(self._headers.getlist(name))


def _target(url: Any) -> str:
    return url.path + (f"?{url.query}" if url.query else "")


# Defined before the gateway: Serve pickles the ingress class when it is decorated.
async def _deny(websocket: WebSocket, status: int, text: str) -> None:
    try:
        await websocket.send_denial_response(PlainTextResponse(text, status_code=status))
    except Exception:  # the server does not offer denial responses: a plain refusal (403)
        await websocket.close(code=1008, reason=text.strip()[:120])


async def _fail(websocket: WebSocket, code: str, message: str, close_code: int) -> None:
    try:
        await websocket.send_bytes(Protocol.error(code, message))
        await websocket.close(code=close_code, reason=code)
    except Exception:  # the client is gone
        pass


@serve.deployment(name="Gateway", ray_actor_options={"num_cpus": 0})
@serve.ingress(gateway_app)
class Gateway:
    """The public side: checks, the browser client, metrics, and a relay per session."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.checks = Server(ServerConfig(**config))  # its request checks and static files; it serves nothing itself
        self.config = self.checks.config
        self.registry = _registry()
        self.token: str | None = None
        self.assigned: dict[str, int] = {}  # sessions this gateway relays, per replica
        self.failed_replicas: set[str] = set()
        self.replica_failures = 0

    async def _internal_token(self) -> str:
        if self.token is None:
            self.token = await self.registry.token.remote()
        return self.token

    async def _live(self) -> dict[str, dict[str, Any]]:
        replicas = await self.registry.replicas.remote()
        return {name: info for name, info in replicas.items() if info["age_s"] <= STALE_S and name not in self.failed_replicas}

    # -- HTTP --------------------------------------------------------------------------------------
    @gateway_app.get("/health")
    async def health(self) -> Response:
        return JSONResponse({"status": "ok"})

    @gateway_app.get("/metrics")
    async def metrics(self, request: Request) -> Response:
        refused = self.checks.refusal(_target(request.url), _Headers(request.headers))
        if refused is not None:
            return PlainTextResponse(refused[1], status_code=refused[0])
        return JSONResponse(await self._metrics())

    @gateway_app.get("/replay")
    async def replay(self, request: Request) -> Response:
        return await self._forward(request, timeout_s=60)  # the replica speaks and encodes: seconds

    @gateway_app.get("/models")
    async def models(self, request: Request) -> Response:
        return await self._forward(request, timeout_s=5)

    async def _forward(self, request: Request, timeout_s: float) -> Response:
        """The request's answer from a live replica (after the checks)."""
        refused = self.checks.refusal(_target(request.url), _Headers(request.headers))
        if refused is not None:
            return PlainTextResponse(refused[1], status_code=refused[0])
        for info in (await self._live()).values():
            try:
                return JSONResponse(json.loads(await self._get(info["address"], _target(request.url), timeout_s)))
            except OSError:
                continue
        return JSONResponse({"error": "no replica is available"}, status_code=503)

    @gateway_app.get("/{path:path}")
    async def static(self, request: Request) -> Response:
        refused = self.checks.refusal(_target(request.url), _Headers(request.headers))
        if refused is not None:
            return PlainTextResponse(refused[1], status_code=refused[0])
        found = self.checks.static_file(request.url.path)
        if found is None:
            return PlainTextResponse("not found\n", status_code=404)
        return Response(found[0], media_type=found[1].split(";")[0])

    async def _get(self, address: str, target: str, timeout_s: float = 5) -> str:
        token = await self._internal_token()

        def fetch() -> str:
            request = urllib.request.Request(f"http://{address}{target}", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.read().decode()

        return await asyncio.to_thread(fetch)

    async def _metrics(self) -> dict[str, Any]:
        replicas = await self.registry.replicas.remote()
        shown, totals = [], {"sessions": 0, "sessions_total": 0, "audio_seconds": 0.0, "compute_seconds": 0.0, "compute_turns": 0, "pending_connections": 0}
        errors: dict[str, int] = {"replica_failed": self.replica_failures} if self.replica_failures else {}
        for name, info in sorted(replicas.items()):
            entry = {"replica": name, "address": info["address"], "version": info["version"], "draining": info["draining"], "age_s": round(info["age_s"], 2)}
            try:
                values = json.loads(await self._get(info["address"], "/metrics"))
            except (OSError, ValueError):
                entry["reachable"] = False
                shown.append(entry)
                continue
            for key in totals:
                totals[key] += values.get(key, 0)
            for code, count in values.get("errors", {}).items():
                errors[code] = errors.get(code, 0) + count
            shown.append({**entry, "reachable": True, **values})
        audio = totals["audio_seconds"]
        return {
            **totals, "errors": errors, "rtf": totals["compute_seconds"] / audio if audio else 0.0,
            "replicas": shown, "gateway": {"relays": sum(self.assigned.values()), "replica_failures": self.replica_failures},
        }

    # -- sessions ----------------------------------------------------------------------------------
    @gateway_app.websocket("/ws")
    async def session(self, websocket: WebSocket) -> None:
        refused = self.checks.refusal(_target(websocket.url), _Headers(websocket.headers))
        if refused is not None:
            await _deny(websocket, *refused)
            return
        await websocket.accept()
        backend, name = await self._connect()
        if backend is None:
            await _fail(websocket, "server_busy", "no replica is available to take a session", 1013)
            return
        try:  # `_connect` counted the session on its replica
            await self._relay(websocket, backend, name)
        finally:
            self.assigned[name] -= 1

    async def _connect(self) -> tuple[Any, str]:
        """A connection to the least loaded live replica (trying the next on failure)."""
        from websockets.asyncio.client import connect

        token = await self._internal_token()
        live = await self._live()
        order = sorted((info["sessions"] + self.assigned.get(name, 0), name) for name, info in live.items() if not info["draining"])
        for _, name in order:
            self.assigned[name] = self.assigned.get(name, 0) + 1  # held while connecting: concurrent hellos spread
            try:
                backend = await asyncio.wait_for(connect(
                    f"ws://{live[name]['address']}/ws", additional_headers={"Authorization": f"Bearer {token}"},
                    max_size=self.config.max_message_bytes, compression=None, open_timeout=5,
                ), 10)
                return backend, name
            except Exception as exc:  # unreachable, too slow, or a handshake it refused
                log.warning("replica %s refused a session: %s", name, exc)
            self.assigned[name] -= 1
        return None, ""

    async def _relay(self, websocket: WebSocket, backend: Any, name: str) -> None:
        from websockets.exceptions import ConnectionClosed

        async def upstream() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                await backend.send(data if data is not None else message.get("text", ""))

        async def downstream() -> tuple[int, str] | None:
            """The replica's messages to the client; its close code and reason, or None when
            the connection broke without a close frame (the replica died)."""
            try:
                async for data in backend:
                    if isinstance(data, bytes):
                        await websocket.send_bytes(data)
                    else:
                        await websocket.send_text(data)
            except ConnectionClosed as exc:
                return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else None
            closed = backend.close_code
            return (closed, backend.close_reason or "") if closed is not None else None

        up, down = asyncio.create_task(upstream()), asyncio.create_task(downstream())
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if up in done and up.exception() is None:  # the client left: end the replica's session
                down.cancel()
                await backend.close()
                return
            if up in done:  # forwarding failed: the replica's side says why (or that it broke)
                await asyncio.wait({down}, timeout=5)
            up.cancel()
            ended = down.result() if down.done() else None
            if ended is None:
                self.replica_failures += 1
                self.failed_replicas.add(name)
                await _fail(websocket, "replica_failed", f"the replica serving this session ({name}) stopped; start a new session", 1011)
                return
            await websocket.close(ended[0] if ended[0] not in (1005, 1006) else 1000, ended[1])
        except Exception:  # the client vanished: nothing more to tell it
            log.debug("relay for replica %s ended", name, exc_info=True)
        finally:
            for task in (up, down):
                if not task.done():
                    task.cancel()
            await backend.close()


# -- deploying -----------------------------------------------------------------------------------
_STARTED_RAY = False
_GATEWAY_FIELDS = ("host", "port", "default_model", "models", "max_message_bytes", "token", "allowed_origins")


def deploy(config: ServerConfig, options: RayOptions, *, version: str | None = None) -> None:
    """Deploy (or update: same ``app_name``) the service on Ray and return once it serves.

    A second deploy with other weights is a rolling update: new replicas start, the gateway
    sends new sessions to them, and the old ones drain their live sessions before stopping.
    """
    global _STARTED_RAY
    config.validate()
    options.validate()
    if config.record_dir is not None:
        raise ConfigError("--record-dir is not available with --ray: replicas run on other nodes")
    if not ray.is_initialized():
        if options.address is None:
            _STARTED_RAY = True
        ray.init(address=options.address, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False)
    _registry()
    serve.start(http_options={"host": config.host, "port": config.port})
    replica_config = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                      if f.name not in ("host", "port", "token", "allowed_origins", "replica_name", "record_dir")}
    version = version or json.dumps(config.weights, sort_keys=True)
    deployment_options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": options.replica_cpus, "num_gpus": options.replica_gpus},
        "graceful_shutdown_timeout_s": options.drain_timeout_s + 10,
        "max_ongoing_requests": 1000,
    }
    if options.autoscaling:
        low = options.min_replicas or 1
        high = options.max_replicas or max(options.replicas, low)
        deployment_options["autoscaling_config"] = {
            "min_replicas": low, "max_replicas": high, "initial_replicas": min(max(options.replicas, low), high),
            "policy": {"policy_function": "codecstream.server.ray_serve:SessionsPolicy", "policy_kwargs": {"target_sessions": options.target_sessions}},
            "upscale_delay_s": 5, "downscale_delay_s": 60,
        }
    else:
        deployment_options["num_replicas"] = options.replicas
    # Two applications: Serve replaces every replica of an application it runs again, so the
    # gateway (which holds the clients' connections) lives in its own, deployed again only when
    # what it checks and serves changes; a rolling update runs the replicas' application alone.
    public = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in _GATEWAY_FIELDS}
    registry = _registry()
    gateway_app = f"{options.app_name}-gateway"
    running = serve.status().applications.get(gateway_app)
    public["_gateways"] = options.gateways  # redeploy the gateway when its count changes, too
    if running is None or running.status != "RUNNING" or ray.get(registry.gateway_config.remote()) != public:
        settings = {k: v for k, v in public.items() if k != "_gateways"}
        gateway = Gateway.options(num_replicas=options.gateways, max_ongoing_requests=100_000).bind(settings)  # type: ignore[attr-defined]
        serve.run(gateway, name=gateway_app, route_prefix="/")
        ray.get(registry.set_gateway_config.remote(public))
    replicas = CodecReplica.options(**deployment_options).bind(  # type: ignore[attr-defined]
        replica_config, version, options.drain_timeout_s, options.replica_cpus
    )
    # Not "wait until the application runs": during an update that lasts until the old replicas
    # have drained. Wait instead until replicas of this version take sessions.
    serve.run_many([serve.RunTarget(replicas, name=options.app_name, route_prefix=None)], wait_for_applications_running=False)
    wanted = min(max(options.replicas, options.min_replicas or 1), options.max_replicas or options.replicas) if options.autoscaling else options.replicas
    deadline = time.monotonic() + 600
    while True:
        live = [info for info in ray.get(registry.replicas.remote()).values()
                if info["version"] == version and not info["draining"] and info["age_s"] <= STALE_S]
        if len(live) >= wanted:
            return
        status = serve.status().applications.get(options.app_name)
        if status is not None and status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise ConfigError(f"the replicas could not start: {status.message}")
        if time.monotonic() > deadline:
            raise ConfigError(f"{wanted} replica(s) did not start in 600 s")
        time.sleep(0.5)


def replicas() -> dict[str, dict[str, Any]]:
    """The registry's view: replica name → address, weights version, draining, sessions."""
    return ray.get(_registry().replicas.remote())


def shutdown() -> None:
    """Stop the application, and the local Ray instance when :func:`deploy` started it."""
    global _STARTED_RAY
    if not ray.is_initialized():
        return
    try:
        registry = ray.get_actor(REGISTRY, namespace=NAMESPACE)
        ray.get(registry.close.remote())
        serve.shutdown()
        ray.kill(registry)
    except Exception:  # already gone
        pass
    if _STARTED_RAY:
        ray.shutdown()
        _STARTED_RAY = False
_GATEWAY_FIELDS = ("host", "port", "default_model", "models", "max_message_bytes", "token", "allowed_origins")


def run_ray(config: ServerConfig, options: RayOptions, *, detach: bool = False) -> None:
    """``codecstream serve --ray``: deploy, then serve until Ctrl-C or SIGTERM (and shut down),
    or return at once with ``detach`` (the application keeps running on the cluster)."""
    import signal

    deploy(config, options)
    print(f"serving on http://{config.host}:{config.port}/ (WebSocket /ws) with {options.replicas} Ray Serve replica(s)", flush=True)
    if detach:
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        shutdown()
