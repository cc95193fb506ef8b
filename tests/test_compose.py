"""docker-compose.yml is valid Compose and its references resolve (no Docker engine needed).

The file is validated against the Compose Specification JSON schema vendored as
tests/compose-spec.json: the upstream compose-spec `schema/compose-spec.json`
(JSON Schema draft-07) as shipped, unmodified, in the npm package dclint 3.1.0
(`package/schemas/compose.schema.json`, MIT), the newest copy found on PyPI/npm.
To refresh it: `npm pack dclint` and copy that file over.

On top of the schema, `cross_check` looks for what the schema cannot see: services,
volumes, files and ports that must exist and agree with each other.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "compose-spec.json").read_text(encoding="utf-8"))

Compose = dict[str, Any]


def load_compose() -> Compose:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def schema_errors(compose: Compose) -> list[str]:
    validator = Draft7Validator(SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(compose)
    ]


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return dict(deps)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _listen_port(command: list[str]) -> int:
    """The port `uvicorn ... --port N` listens on (uvicorn's default is 8000)."""
    for i, arg in enumerate(command):
        if arg == "--port":
            return int(command[i + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return 8000


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of each mount, short or long syntax."""
    mounts = []
    for mount in service.get("volumes") or []:
        if isinstance(mount, str):
            source, _, rest = mount.partition(":")
            target = rest.split(":", 1)[0]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            mounts.append((kind, source, target))
        else:
            mounts.append((mount.get("type", "volume"), mount.get("source", ""), mount["target"]))
    return mounts


def nginx_proxy_targets(conf: str) -> list[tuple[str, int]]:
    """(host, port) of every proxy_pass, through `set $var` and `upstream` blocks."""
    conf = re.sub(r"#[^\n]*", "", conf)
    variables = dict(re.findall(r"\bset\s+\$(\w+)\s+([^;\s]+)\s*;", conf))
    upstreams = {
        name: re.findall(r"\bserver\s+([^;\s]+)", body)
        for name, body in re.findall(r"\bupstream\s+(\w+)\s*\{([^}]*)\}", conf)
    }
    targets = []
    for url in re.findall(r"\bproxy_pass\s+([^;\s]+)\s*;", conf):
        url = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), url)
        address = url.split("://", 1)[-1].split("/", 1)[0]
        for server in upstreams.get(address, [address]):
            host, _, port = server.partition(":")
            targets.append((host, int(port or 80)))
    return targets


def cross_check(compose: Compose, root: Path = ROOT) -> list[str]:
    """What the schema cannot see. Returns the problems found (empty when all is well)."""
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    volumes = set(compose.get("volumes") or {})

    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        for dep in _depends_on(service):
            if dep not in services:
                problems.append(f"{name} depends on unknown service {dep}")
        for kind, source, _target in _mounts(service):
            if kind == "volume" and source and source not in volumes:
                problems.append(f"{name} mounts undeclared volume {source}")
            if kind == "bind" and not (root / source).exists():
                problems.append(f"{name} bind-mounts missing {source}")
        build = service.get("build")
        if build is not None:
            spec = {"context": build} if isinstance(build, str) else build
            context = root / spec.get("context", ".")
            if not (context / spec.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no Dockerfile in build context {context}")

    for required in ("db", "redis", "migrate", "app", "lb"):
        if required not in services:
            problems.append(f"missing service {required}")
    if problems:
        return problems

    for name in ("db", "redis", "app"):
        if not (services[name].get("healthcheck") or {}).get("test"):
            problems.append(f"{name} has no healthcheck")

    app = services["app"]
    app_deps = _depends_on(app)
    if app_deps.get("migrate", {}).get("condition") != "service_completed_successfully":
        problems.append("app must wait for migrate: service_completed_successfully")
    for dep in ("db", "redis"):
        if app_deps.get(dep, {}).get("condition") != "service_healthy":
            problems.append(f"app must wait for {dep}: service_healthy")
    if _depends_on(services["migrate"]).get("db", {}).get("condition") != "service_healthy":
        problems.append("migrate must wait for db: service_healthy")
    if int((app.get("deploy") or {}).get("replicas", 1)) < 2:
        problems.append("app must run at least 2 replicas")

    env = _environment(app)
    for key, scheme in (("DATABASE_URL", "postgresql+asyncpg"), ("REDIS_URL", "redis")):
        url = urlsplit(env.get(key, ""))
        if url.scheme != scheme or url.hostname not in services:
            problems.append(f"app {key} must be a {scheme} URL to a service, not {url.geturl()!r}")
    if env.get("ENVIRONMENT") != "production":
        problems.append("app must run with ENVIRONMENT=production")

    app_port = _listen_port(_command(app))
    healthcheck = " ".join(map(str, app["healthcheck"]["test"]))
    if f"127.0.0.1:{app_port}/healthz" not in healthcheck:
        problems.append(f"app healthcheck does not probe /healthz on port {app_port}")

    lb = services["lb"]
    confs = [root / source for kind, source, _ in _mounts(lb) if kind == "bind"]
    confs = [c for c in confs if c.suffix == ".conf" and c.is_file()]
    if "app" not in _depends_on(lb):
        problems.append("lb must depend on app")
    if not confs:
        problems.append("lb mounts no nginx .conf file")
    for conf in confs:
        targets = nginx_proxy_targets(conf.read_text(encoding="utf-8"))
        if not targets:
            problems.append(f"{conf.name} has no proxy_pass")
        for host, port in targets:
            if host != "app" or port != app_port:
                problems.append(f"{conf.name} proxies to {host}:{port}, app is app:{app_port}")
    return problems


def test_schema_is_the_draft7_compose_specification() -> None:
    assert SCHEMA["title"] == "Compose Specification"
    assert "draft-07" in SCHEMA["$schema"]
    Draft7Validator.check_schema(SCHEMA)


def test_compose_file_matches_the_schema() -> None:
    assert schema_errors(load_compose()) == []


def test_compose_references_resolve() -> None:
    assert cross_check(load_compose()) == []


def test_nginx_websocket_settings() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    assert nginx_proxy_targets(conf) == [("app", 8000), ("app", 8000)]
    ws = conf[conf.index("location /ws/") :]
    ws = ws[: ws.index("}")]
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", ws)
    assert re.search(r"proxy_read_timeout\s+1h;", ws)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s", ws)
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s", ws)
    assert "resolver 127.0.0.11" in conf


def test_nginx_parser_follows_upstream_blocks() -> None:
    conf = "upstream backend { server app:9000; server other:81; }\nproxy_pass http://backend;"
    assert nginx_proxy_targets(conf) == [("app", 9000), ("other", 81)]


def _set(path: str, value: Any) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        *parents, last = path.split(".")
        node = compose
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _rename_depends_on(compose: Compose) -> None:
    compose["services"]["app"]["dependson"] = compose["services"]["app"].pop("depends_on")


def _drop_redis_healthcheck(compose: Compose) -> None:
    del compose["services"]["redis"]["healthcheck"]


def _proxy_elsewhere(tmp: Path) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
        (tmp / "deploy").mkdir()
        (tmp / "deploy" / "nginx.conf").write_text(conf.replace("app:8000", "app:8001"))

    return mutate


BROKEN: dict[str, tuple[Callable[[Compose], None], str]] = {
    "typo'd key": (_rename_depends_on, "'dependson' does not match any of the regexes"),
    "unknown dependency": (
        _set("services.lb.depends_on", {"web": {"condition": "service_started"}}),
        "depends on unknown service web",
    ),
    "undeclared volume": (_set("volumes", {}), "undeclared volume pgdata"),
    "missing bind file": (
        _set("services.lb.volumes", ["./deploy/missing.conf:/etc/nginx/conf.d/default.conf:ro"]),
        "bind-mounts missing ./deploy/missing.conf",
    ),
    "app before migrations": (
        _set("services.app.depends_on.migrate", {"condition": "service_started"}),
        "app must wait for migrate",
    ),
    "one replica": (_set("services.app.deploy", {"replicas": 1}), "at least 2 replicas"),
    "redis host not a service": (
        _set("services.app.environment.REDIS_URL", "redis://cache:6379/0"),
        "REDIS_URL must be a redis URL to a service",
    ),
    "app on another port": (
        _set("services.app.command", ["uvicorn", "app.asgi:app", "--port", "9000"]),
        "proxies to app:8000, app is app:9000",
    ),
    "no redis healthcheck": (_drop_redis_healthcheck, "redis has no healthcheck"),
    "bad restart value": (_set("services.migrate.restart", False), "restart: False"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_copies_are_caught(case: str) -> None:
    mutate, expected = BROKEN[case]
    compose = copy.deepcopy(load_compose())
    mutate(compose)
    found = schema_errors(compose) + cross_check(compose)
    assert any(expected in problem for problem in found), found


def test_nginx_proxying_to_the_wrong_port_is_caught(tmp_path: Path) -> None:
    compose = copy.deepcopy(load_compose())
    _proxy_elsewhere(tmp_path)(compose)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    problems = cross_check(compose, root=tmp_path)
    assert problems == [
        "nginx.conf proxies to app:8001, app is app:8000",
        "nginx.conf proxies to app:8001, app is app:8000",
    ]


def _system_packages(script: str) -> set[str]:
    match = re.search(r"PACKAGES=\(([^)]*)\)", script)
    assert match, "scripts/system-deps.sh lists no PACKAGES"
    return set(match.group(1).split())


def test_image_installs_what_pdf_reports_need() -> None:
    """The image runs the same WeasyPrint stack the tests run (Pango, HarfBuzz, fonts)."""
    root = Path(__file__).resolve().parents[1]
    needed = {
        p
        for p in _system_packages((root / "scripts" / "system-deps.sh").read_text())
        if p.startswith(("libpango", "libharfbuzz", "libfontconfig", "fonts-"))
    }
    assert len(needed) >= 5
    dockerfile = (root / "Dockerfile").read_text().replace("\\\n", " ")
    installs = set()
    for line in dockerfile.splitlines():
        if "apt-get install" in line:
            installs |= set(line.split())
    assert needed <= installs, f"Dockerfile misses {sorted(needed - installs)}"
