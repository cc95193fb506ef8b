"""Settings refuse unsafe values outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_production_requires_secret_and_public_url() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY must be set"):
        Settings(environment="production", secret_key="")
    with pytest.raises(ValidationError, match="PUBLIC_URL must be set"):
        Settings(environment="production", secret_key="s" * 40, public_url="")
    ok = Settings(
        environment="production", secret_key="s" * 40, public_url="https://cx.agency.gov/"
    )
    assert ok.public_url == "https://cx.agency.gov"
    assert ok.secure_cookies
    assert ok.allowed_origins == ["https://cx.agency.gov"]


def test_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.gov, https://b.gov")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/cx")
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    settings = Settings()
    assert settings.allowed_origins == ["https://a.gov", "https://b.gov"]
    assert settings.database_url == "postgresql+asyncpg://u@db/cx"
    assert settings.redis_url is None
    assert not settings.is_sqlite


def test_development_defaults() -> None:
    settings = Settings(secret_key="k" * 40)
    assert settings.is_sqlite
    assert settings.public_url == "http://127.0.0.1:8000"
    assert "http://localhost:8000" in settings.allowed_origins
    with pytest.raises(ValidationError):
        Settings(environment="staging")
