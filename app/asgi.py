"""ASGI entry point for Uvicorn: `uvicorn app.asgi:app`."""

from app.main import create_app

# This process serves this one app: what it made at startup is frozen out of the
# garbage collector's full passes (see `create_app`).
app = create_app(freeze_gc=True)
