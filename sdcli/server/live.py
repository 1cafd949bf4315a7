"""The running job, live: /sdapi/v1/progress (with the preview), /interrupt, /skip; and the watch on each
request's connection that cancels a job whose client has gone away, freeing its place in the queue."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sdcli.server import schemas
from sdcli.server.engine import CLIENT_GONE, Engine


def add_routes(app: Any, engine: Engine) -> None:
    """The progress routes on `app`, and the disconnect watch around it."""

    @app.get("/sdapi/v1/progress", response_model=schemas.ProgressResponse)
    def progress(skip_current_image: bool = False) -> Any:
        state = engine.progress
        done, eta = state.fraction()
        image = None if skip_current_image else state.current_image()
        return schemas.ProgressResponse(progress=done, eta_relative=eta, state=state.as_state(),
                                        current_image=image, textinfo=state.textinfo())

    @app.post("/sdapi/v1/interrupt")
    def interrupt() -> dict[str, Any]:
        engine.interrupt()
        return {}

    @app.post("/sdapi/v1/skip")
    def skip() -> dict[str, Any]:
        engine.skip()
        return {}

    app.add_middleware(WatchDisconnect)


class WatchDisconnect:
    """ASGI middleware: once a request's body is read, wait for the client to disconnect; the request's job
    sees it through engine.CLIENT_GONE (checked while it waits for the lock and at every step)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gone = threading.Event()
        body_read = asyncio.Event()

        async def reading() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        token = CLIENT_GONE.set(gone.is_set)
        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, reading, send)
        finally:
            watcher.cancel()
            CLIENT_GONE.reset(token)


def serve(app: Any, engine: Engine, host: str, port: int) -> None:
    """Run `app` with uvicorn until SIGINT/SIGTERM. On the signal the engine stops taking jobs (requests
    waiting get 503) and uvicorn's graceful shutdown lets the running job finish and answer; a second
    signal exits at once."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            engine.close()
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
