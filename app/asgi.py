"""ASGI entry point for Uvicorn: `uvicorn app.asgi:app`."""

from app.main import create_app

app = create_app()
