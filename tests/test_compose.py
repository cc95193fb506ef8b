"""docker-compose.yml is well formed and its references resolve (no Docker engine needed)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_references_resolve() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        if "build" in service:
            assert (ROOT / "Dockerfile").is_file()
    app_env = services["app"]["environment"]
    assert app_env["ENVIRONMENT"] == "production"
    assert app_env["DATABASE_URL"].startswith("postgresql+asyncpg://")
