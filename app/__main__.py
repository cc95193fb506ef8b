"""Command line: `python -m app COMMAND`.

serve                  apply migrations and start the server (HOST/PORT)
migrate                apply migrations to DATABASE_URL
create-facilitator     add a facilitator account
validate-definition    check workshop definition files
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.config import DATA_DIR, Settings, get_settings


async def _migrate(settings: Settings) -> None:
    from app.db.engine import make_engine
    from app.db.migrate import upgrade

    if settings.is_sqlite:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _create_facilitator(
    settings: Settings, email: str, password: str, name: str | None
) -> int:
    from app.db.engine import make_engine, make_sessionmaker
    from app.services.errors import ServiceError
    from app.services.facilitators import create_facilitator

    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            facilitator = await create_facilitator(session, email, password, name)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"created facilitator {facilitator.email}")
    return 0


async def _demo_banner(settings: Settings) -> str:
    from app.db.engine import make_engine, make_sessionmaker
    from app.services.facilitators import ensure_demo_facilitator

    lines = [f"CX Maturity Workshop is running at {settings.public_url}/"]
    if settings.is_production:
        lines.append("Sign in with a facilitator account (python -m app create-facilitator).")
        return "\n".join(lines)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            demo = await ensure_demo_facilitator(session, DATA_DIR / "demo_facilitator_password")
    finally:
        await engine.dispose()
    if demo.email and demo.password:
        lines.append(f"Facilitator sign-in: {settings.public_url}/signin")
        lines.append(f"  email:    {demo.email}")
        lines.append(f"  password: {demo.password}")
    else:
        lines.append(f"Sign in at {settings.public_url}/signin with your facilitator account.")
    return "\n".join(lines)


def _validate(paths: list[Path]) -> int:
    from app.domain.definitions import validate_file

    failed = 0
    for path in paths:
        problems = validate_file(path)
        if problems:
            failed += 1
            for problem in problems:
                print(problem, file=sys.stderr)
        else:
            print(f"{path}: valid")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="apply migrations and start the server")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reload", action="store_true")
    sub.add_parser("migrate", help="apply migrations to DATABASE_URL")
    create = sub.add_parser("create-facilitator", help="add a facilitator account")
    create.add_argument("email")
    create.add_argument("--password", required=True)
    create.add_argument("--name", default=None)
    backup = sub.add_parser("backup", help="copy the SQLite database while the server runs")
    backup.add_argument("path", type=Path)
    validate = sub.add_parser("validate-definition", help="check workshop definition files")
    validate.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.command == "validate-definition":
        return _validate(args.paths)
    settings = get_settings()
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        return 0
    if args.command == "backup":
        from app.db.backup import backup_sqlite

        try:
            pages = backup_sqlite(settings.database_url, args.path)
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"backed up {pages} pages to {args.path}")
        return 0
    if args.command == "create-facilitator":
        return asyncio.run(_create_facilitator(settings, args.email, args.password, args.name))
    # serve
    import uvicorn

    if args.workers > 1 and not settings.redis_url:
        print(
            "error: several workers need REDIS_URL: without it each worker only "
            "sees its own connections",
            file=sys.stderr,
        )
        return 2

    asyncio.run(_migrate(settings))
    print(asyncio.run(_demo_banner(settings)), flush=True)
    uvicorn.run(
        "app.asgi:app",
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        reload=args.reload,
        proxy_headers=True,
        ws_max_size=64 * 1024,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
