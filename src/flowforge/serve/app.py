"""The playground's web application (Starlette): the page, a JSON API and an event stream.

Every request passes :class:`Guard` first, whatever its route: its ``Host`` must be one the
playground answers to (a loopback name, or the address it was bound to), a request that
changes anything (any method but GET and HEAD) or reads the API must come from the
playground's own page (``Origin`` and ``Sec-Fetch-Site``, which browsers set and pages cannot),
and its body is bounded (:data:`MAX_BODY_BYTES`; an upload :data:`MAX_FILE_BYTES`), refused
from its ``Content-Length`` before anything is read. JSON bodies are bounded in nesting
(:data:`MAX_JSON_DEPTH`), and every bad request is a 4xx answer with a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flowforge.config import ConfigError
from flowforge.serve.playground import (
    DEFAULT,
    FAMILIES,
    MAX_TRAININGS,
    Busy,
    Playground,
    PlaygroundError,
)
from flowforge.serve.sources import MAX_FILE_BYTES, TOY

__all__ = ["LOOPBACK_HOSTS", "MAX_BODY_BYTES", "MAX_JSON_DEPTH", "Guard", "create_app", "serve"]

STATIC = Path(__file__).with_name("static")
# the Host headers a loopback playground answers: a page of another site that a DNS record
# points at 127.0.0.1 (DNS rebinding) gets no answer, so it cannot read the user's files
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# a request's body, but an upload's: 20,000 drawn points are under 1 MiB of JSON
MAX_BODY_BYTES = 2 * 2**20
MAX_JSON_DEPTH = 8  # the page's deepest request, drawn points, is 3 deep
UPLOAD_ROUTE = "/api/data/upload"
# what a browser says of a request from a page of another origin (Fetch Metadata)
FOREIGN = ("cross-site", "same-site")


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware in front of every route: the ``Host`` check (``hosts``, ``["*"]``:
    any), the same-origin check of writes and API reads, and the body bound ``limit(path)``.

    A request is foreign when the browser marks it ``Sec-Fetch-Site: cross-site`` or
    ``same-site`` (another port of the same machine is another origin), or when its
    ``Origin`` is not the origin it was sent to. Opening the page itself from a link of
    another site stays allowed: only writes and the API are refused (403). Clients that are
    not browsers (curl, scripts) send neither header, and pass.
    """

    def __init__(self, app: Any, hosts: Sequence[str], limit: Callable[[str], int]) -> None:
        self.app = app
        self.hosts = {host_name(h) for h in hosts}
        self.limit = limit

    def refusal(self, scope: dict[str, Any], headers: Any) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if "*" not in self.hosts and host_name(host) not in self.hosts:
            return 400, (
                f"Host {host[:80]!r} is not this playground's address; open it as "
                f"http://127.0.0.1:PORT/ (it answers {', '.join(sorted(self.hosts))})"
            )
        guarded = scope["method"] not in ("GET", "HEAD") or scope["path"].startswith("/api/")
        origin = headers.get("origin")
        if guarded and (
            headers.get("sec-fetch-site") in FOREIGN
            or (origin is not None and origin.partition("://")[2] != host)
        ):
            return 403, "a request from another site's page: the playground answers its own"
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            return 400, f"Content-Length {length[:40]!r} is not a number of bytes"
        if length is not None and int(length) > self.limit(scope["path"]):
            return too_big(self.limit(scope["path"]))
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope, Headers(scope=scope))
        if refused is None and scope["method"] not in ("GET", "HEAD"):
            receive, refused = await self.bounded(receive, self.limit(scope["path"]))
        if refused is not None:
            response = JSONResponse({"error": refused[1]}, status_code=refused[0])
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @staticmethod
    async def bounded(receive: Any, limit: int) -> tuple[Any, tuple[int, str] | None]:
        """The body read up to ``limit`` bytes (a chunked one has no ``Content-Length``), and
        a ``receive`` that hands it to the application; or a 413."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return receive, too_big(limit)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()  # a disconnect, when the application waits for one
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, None


def too_big(limit: int) -> tuple[int, str]:
    size = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit:,} bytes"
    return 413, f"the request's body is over {size}, the playground's limit for it"


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (``[]``: 1), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in (v.values() if isinstance(v, dict) else v))
    return deepest


def create_app(
    workspace: str | Path,
    threads: int = 1,
    interval: float = 0.5,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    max_trainings: int = MAX_TRAININGS,
) -> Any:
    """The Starlette application over the playground in ``workspace``; the event stream checks
    the run's files every ``interval`` seconds. It answers requests whose Host header is one
    of ``hosts`` (``["*"]``: any), through :class:`Guard`; at most ``max_trainings`` runs
    train at once (another start or resume is answered 429).

    Every POST carries JSON (or, for an upload, an ``X-Filename`` header): neither can be sent
    by another site's page without the browser asking first (a CORS preflight), which this
    application never grants; and :class:`Guard` refuses a write whose ``Origin`` or
    ``Sec-Fetch-Site`` says it comes from another page.
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise ConfigError(
            "flowforge serve needs Starlette and uvicorn (the serve extra): "
            "pip install 'flowforge[serve]'"
        ) from None

    playground = Playground(workspace, threads, max_trainings)

    def error(e: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=429 if isinstance(e, Busy) else status)

    async def body(request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise PlaygroundError("the request is not JSON (Content-Type: application/json)")
        try:
            data = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PlaygroundError("the request is not JSON") from None
        except RecursionError:  # the parser's own bound, far deeper than ours
            data = None
        if data is None or json_depth(data) > MAX_JSON_DEPTH:
            raise PlaygroundError(f"the request nests deeper than {MAX_JSON_DEPTH} levels")
        return data

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def options(request: Request) -> JSONResponse:
        families = {k: {"label": f.label, "depth": f.depth} for k, f in FAMILIES.items()}
        limit = MAX_FILE_BYTES
        return JSONResponse(
            {"families": families, "data": TOY, "default": DEFAULT, "max_file_bytes": limit}
        )

    async def preview(request: Request) -> JSONResponse:
        try:
            return JSONResponse(
                await asyncio.to_thread(playground.preview, request.path_params["name"])
            )
        except PlaygroundError as e:
            return error(e, 404)

    async def open_path(request: Request) -> JSONResponse:
        try:
            data = await body(request)
            path = data.get("path") if isinstance(data, dict) else None
            return JSONResponse(await asyncio.to_thread(playground.open_path, path))
        except PlaygroundError as e:
            return error(e)

    async def upload(request: Request) -> JSONResponse:
        filename = unquote(request.headers.get("x-filename", ""))
        if not filename:
            return error(PlaygroundError("an upload names its file (an X-Filename header)"))
        content = await request.body()  # bounded by the Guard: MAX_FILE_BYTES
        try:
            return JSONResponse(await asyncio.to_thread(playground.upload, filename, content))
        except PlaygroundError as e:
            return error(e)

    async def runs(request: Request) -> JSONResponse:
        return JSONResponse({"runs": playground.runs()})

    async def start(request: Request) -> JSONResponse:
        try:
            name = await asyncio.to_thread(playground.start, await body(request))
        except PlaygroundError as e:
            return error(e)
        return JSONResponse({"run": name})

    async def stop(request: Request) -> JSONResponse:
        try:
            await body(request)
            playground.stop(request.path_params["run"])
        except PlaygroundError as e:
            return error(e, 409)
        return JSONResponse({"ok": True})

    async def resume(request: Request) -> JSONResponse:
        try:
            data = await body(request)
            steps = data.get("steps", 500) if isinstance(data, dict) else data
            playground.resume(request.path_params["run"], steps)
        except PlaygroundError as e:
            return error(e, 409)
        return JSONResponse({"ok": True})

    async def view(request: Request) -> JSONResponse:
        try:
            return JSONResponse(
                await asyncio.to_thread(playground.view, request.path_params["run"])
            )
        except PlaygroundError as e:
            return error(e, 404)

    async def events(request: Request) -> Response:
        run = request.path_params["run"]
        try:
            playground.run_dir(run)
        except PlaygroundError as e:
            return error(e, 404)

        async def stream() -> AsyncIterator[str]:
            last = None
            quiet = 0
            while not await request.is_disconnected():
                try:
                    v = await asyncio.to_thread(playground.view, run)
                except PlaygroundError as e:
                    v = {"run": run, "state": "error", "message": str(e)}
                key = json.dumps([v.get("state"), len(v.get("records", [])), v.get("box")])
                key += str(v.get("summary") is not None)
                if key != last:
                    last, quiet = key, 0
                    yield f"data: {json.dumps(v)}\n\n"
                else:
                    quiet += 1
                    if quiet * interval >= 15:
                        quiet = 0
                        yield ": keep-alive\n\n"
                await asyncio.sleep(interval)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def download(request: Request) -> Response:
        run = request.path_params["run"]
        try:
            data = await asyncio.to_thread(playground.archive, run)
        except PlaygroundError as e:
            return error(e, 404)
        headers = {"Content-Disposition": f'attachment; filename="{run}.zip"'}
        return Response(data, media_type="application/zip", headers=headers)

    routes = [
        Route("/", index),
        Route("/api/options", options),
        Route("/api/data/path", open_path, methods=["POST"]),
        Route(UPLOAD_ROUTE, upload, methods=["POST"]),
        Route("/api/data/{name}", preview),
        Route("/api/runs", runs),
        Route("/api/runs", start, methods=["POST"]),
        Route("/api/runs/{run}", view),
        Route("/api/runs/{run}/events", events),
        Route("/api/runs/{run}/stop", stop, methods=["POST"]),
        Route("/api/runs/{run}/resume", resume, methods=["POST"]),
        Route("/api/runs/{run}/download", download),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(playground.shutdown)  # stop workers: they save last.pt

    def limit(path: str) -> int:
        return MAX_FILE_BYTES if path == UPLOAD_ROUTE else MAX_BODY_BYTES

    middleware = [Middleware(Guard, hosts=list(hosts), limit=limit)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.playground = playground
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; an address in use or unknown is an ``OSError``
    (one line from the command), not a log line of uvicorn's."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as e:  # socket.gaierror: an unknown name
        raise OSError(e.errno, f"--host {host}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"--host {host} --port {port}: {e.strerror}") from None
    return sock


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workspace: str | Path = "runs/playground",
    allow_remote: bool = False,
    threads: int = 1,
    max_trainings: int = MAX_TRAININGS,
) -> None:
    """Serves the playground until Ctrl-C. A non-loopback ``host`` needs ``allow_remote``;
    it then answers the ``Host`` names of ``host`` and loopback (any name when ``host`` is
    ``0.0.0.0`` or ``::``). Bad values are a :class:`ConfigError` before anything starts."""
    for what, value, lo, hi in (
        ("--port", port, 0, 65535),
        ("--max-trainings", max_trainings, 1, 64),
        ("threads", threads, 1, 1024),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{what}: should be a whole number in [{lo}, {hi}], got {value!r}")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"--host: should be an address such as 127.0.0.1, got {host!r}")
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            f"--host {host!r}: the playground has no authentication and serves 127.0.0.1 only; "
            f"give --allow-remote to bind {host!r} anyway"
        )
    hosts = ["*"] if is_unspecified(host) else [*LOOPBACK_HOSTS, host]
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("flowforge serve needs uvicorn: pip install 'flowforge[serve]'") from None
    app = create_app(workspace, threads, hosts=hosts, max_trainings=max_trainings)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"flowforge playground on http://{shown}:{sock.getsockname()[1]}/ "
        f"(runs in {Path(workspace).resolve()})",
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
