"""Application factory: settings, database, definitions, routes, static files."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.pool import QueuePool

from app import logs
from app.config import PROJECT_ROOT, Settings, get_settings
from app.db.engine import Checkpointer, make_engine, make_live_engine, make_sessionmaker
from app.domain.definitions import load_definitions
from app.realtime import socket
from app.realtime.hub import make_hub
from app.realtime.presence import make_board
from app.realtime.rooms import Rooms
from app.services.errors import ServiceError
from app.services.live.engine import DefinitionCache, LiveService
from app.services.live.lane import make_lane
from app.services.live.pg_lane import make_pg_lane
from app.services.security import TokenCodec
from app.web import api, errors, exports, live_pages, pages
from app.web.headers import SecurityHeadersMiddleware
from app.web.ratelimit import make_limiters
from app.web.templating import make_templates

log = logging.getLogger("app")
STATIC_DIR = PROJECT_ROOT / "static"


def create_app(settings: Settings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """The app. `freeze_gc` (a server process's one app, `app.asgi`): once started,
    move every object made so far out of the garbage collector's reach (`gc.freeze`).

    A worker's modules, definitions, templates and metadata live as long as it does,
    yet each full collection walked them all: about 160,000 objects, 60-95 ms with
    the event loop stopped, about once per worker in a 30-second benchmark run
    (docs/benchmarks.md, change 31). Tests build many apps in one process, where
    freezing would keep every earlier test's garbage: they leave it off.
    """
    settings = settings or get_settings()
    logs.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        # The live commands' own engine: on SQLite it runs on the loop's thread (no
        # thread hop per statement); on PostgreSQL it is `engine` itself.
        live_engine = make_live_engine(engine)
        app.state.live_engine = live_engine
        hub = make_hub(settings.redis_url)
        await hub.start()
        app.state.hub = hub
        rooms = app.state.rooms = Rooms(hub, make_board(settings.redis_url))
        await rooms.presence.start()
        app.state.live = LiveService(
            app.state.sessionmaker,
            hub,
            DefinitionCache(),
            serialize_writes=settings.is_sqlite,
            command_sessionmaker=make_sessionmaker(live_engine),
            lane=make_lane(engine, live_engine),
            pg_lane=make_pg_lane(engine),
        )
        app.state.rehearsed = 0
        if app.state.live.pg_lane is not None:
            await app.state.live.pg_lane.warm()
            # The pool's connections, each warmed with a facilitator's commands.
            pool = engine.sync_engine.pool
            app.state.rehearsed = await app.state.live.rehearse(
                next(iter(app.state.definitions.values())),
                pool.size() if isinstance(pool, QueuePool) else 1,
            )
        # That engine leaves checkpoints to this task, which runs them off the loop.
        checkpointer = Checkpointer(engine) if live_engine is not engine else None
        if checkpointer is not None:
            checkpointer.start()
        app.state.checkpointer = checkpointer
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await app.state.live.aclose()
            await rooms.presence.stop()
            await hub.stop()
            if checkpointer is not None:
                await checkpointer.stop()
            if live_engine is not engine:
                await live_engine.dispose()
            await engine.dispose()
            if limiter_redis is not None:
                await limiter_redis.aclose()

    app = FastAPI(
        title="CX Maturity Workshop",
        version="0.1.0",
        summary="Live facilitation server for customer-experience maturity workshops",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.codec = TokenCodec(settings.secret_key)
    # Definitions are validated at start-up: a broken YAML file stops the server
    # with a message naming the file and field, rather than failing mid-workshop.
    app.state.definitions = load_definitions(Path(settings.definitions_dir))
    app.state.templates = make_templates()
    sign_in_limiter, join_limiter, limiter_redis = make_limiters(settings.redis_url)
    app.state.sign_in_limiter = sign_in_limiter
    app.state.join_limiter = join_limiter

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status_code)

    errors.install(app)

    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.secure_cookies)
    app.include_router(api.router)
    app.include_router(exports.router)
    app.include_router(pages.router)
    app.include_router(live_pages.router)
    app.include_router(socket.router)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
