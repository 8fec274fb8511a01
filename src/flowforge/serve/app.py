"""The playground's web application (Starlette): the page, a JSON API and an event stream."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flowforge.config import ConfigError
from flowforge.serve.playground import DEFAULT, FAMILIES, Playground, PlaygroundError
from flowforge.serve.sources import MAX_FILE_BYTES, TOY, too_large

__all__ = ["LOOPBACK_HOSTS", "create_app", "serve"]

STATIC = Path(__file__).with_name("static")
# the Host headers a loopback playground answers: a page of another site that a DNS record
# points at 127.0.0.1 (DNS rebinding) gets no answer, so it cannot read the user's files
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def create_app(
    workspace: str | Path,
    threads: int = 1,
    interval: float = 0.5,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> Any:
    """The Starlette application over the playground in ``workspace``; the event stream checks
    the run's files every ``interval`` seconds. It answers requests whose Host header is one
    of ``hosts`` (``["*"]``: any).

    Every POST carries JSON (or, for an upload, an ``X-Filename`` header): neither can be sent
    by another site's page without the browser asking first (a CORS preflight), which this
    application never grants.
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise ConfigError(
            "flowforge serve needs Starlette and uvicorn (the serve extra): "
            "pip install 'flowforge[serve]'"
        ) from None

    playground = Playground(workspace, threads)

    def error(e: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=status)

    async def body(request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise PlaygroundError("the request is not JSON (Content-Type: application/json)")
        try:
            return json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PlaygroundError("the request is not JSON") from None

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
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FILE_BYTES:
            return error(too_large(filename), 413)
        chunks, size = [], 0
        async for chunk in request.stream():  # never more than the limit in memory
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                return error(too_large(filename), 413)
            chunks.append(chunk)
        try:
            return JSONResponse(
                await asyncio.to_thread(playground.upload, filename, b"".join(chunks))
            )
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
        Route("/api/data/upload", upload, methods=["POST"]),
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

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))]
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


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workspace: str | Path = "runs/playground",
    allow_remote: bool = False,
    threads: int = 1,
) -> None:
    """Serves the playground until Ctrl-C. A non-loopback ``host`` needs ``allow_remote``."""
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            f"--host {host}: the playground has no authentication and serves 127.0.0.1 only; "
            f"give --allow-remote to bind {host} anyway"
        )
    hosts = ["*"] if allow_remote else [*LOOPBACK_HOSTS, host]
    app = create_app(workspace, threads, hosts=hosts)
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("flowforge serve needs uvicorn: pip install 'flowforge[serve]'") from None
    print(f"flowforge playground on http://{host}:{port}/ (runs in {Path(workspace).resolve()})")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
