"""Settings: one object, read from the environment and `.env`.

Development gets safe conveniences (a generated secret kept under ./data, a demo
facilitator); production refuses to start without an explicit SECRET_KEY and
never creates demo accounts.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"


def _dev_secret(path: Path) -> str:
    """Return the development secret kept in `path`, creating it on first use."""
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default_factory=lambda: f"sqlite+aiosqlite:///{DATA_DIR / 'workshops.db'}"
    )
    redis_url: str | None = None
    secret_key: str = ""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    definitions_dir: Path = PROJECT_ROOT / "workshop_templates"
    participant_token_days: int = 14
    session_hours: int = 12
    access_token_hours: int = 12

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, data: object) -> object:
        if isinstance(data, dict):
            raw = data.get("allowed_origins")
            if isinstance(raw, str):
                data["allowed_origins"] = [o.strip() for o in raw.split(",") if o.strip()]
        return data

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.database_url == "":
            raise ValueError("DATABASE_URL must not be empty")
        if self.database_url.startswith("postgresql://"):
            # Accept the usual libpq-style URL and use the async driver.
            self.database_url = "postgresql+asyncpg://" + self.database_url.removeprefix(
                "postgresql://"
            )
        if self.redis_url == "":
            self.redis_url = None
        if self.environment == "production":
            if len(self.secret_key) < 32:
                raise ValueError(
                    "SECRET_KEY must be set to a random value of at least 32 characters "
                    "in production, e.g. the output of: "
                    "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
            if not self.public_url:
                raise ValueError(
                    "PUBLIC_URL must be set in production (e.g. https://cx.example.gov)"
                )
        elif not self.secret_key:
            self.secret_key = _dev_secret(DATA_DIR / "secret_key")
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if not self.allowed_origins:
            self.allowed_origins = _default_origins(
                self.public_url, self.port, local=self.environment != "production"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


def _default_origins(public_url: str, port: int, *, local: bool) -> list[str]:
    origins = {public_url}
    if local:
        origins |= {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}
    return sorted(origins)


@lru_cache
def get_settings() -> Settings:
    return Settings()
