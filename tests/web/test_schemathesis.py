"""Schemathesis against the app's own OpenAPI schema, in process, with every check.

Each API operation gets generated requests, valid and invalid ones (positive and
negative modes, plus Schemathesis's coverage phase of boundary values), sent as a
signed-in facilitator; Schemathesis itself also sends them without credentials to
see that authentication is enforced. Every built-in check runs: no server errors,
every status code and response body as documented (so the `responses` declared in
`app/web/api.py` and `app/web/exports.py` must list everything a route answers),
content types and headers as documented, invalid input refused, valid input
accepted, authentication not ignored, unsupported methods answered with 405.

One refinement, stricter than the built-in "valid data is accepted" check on the
operations that take free text or a choice the schema cannot spell out (a title that
is blank after trimming or holds control characters, an unknown definition, a
document that is not an export, no workshop chosen): such a request may be refused
with 422 only as a *service* refusal (`{"detail": "...", "code": "invalid"}`), never
as FastAPI's field-by-field list, which would mean the schema and the parser
disagree.

So that valid requests reach real data and not only 404s, a share of the valid cases
(chosen by a hash of the case, so runs repeat) is pointed at a real workshop: its id,
its join code, its JSON export as an import. Runs are derandomized.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import upgrade
from app.domain.definitions import load_definitions
from app.main import create_app
from app.services.facilitators import create_facilitator
from app.services.security import ACCESS
from app.services.workshops import create_workshop
from tests.conftest import make_settings

# The schema is read when the module is collected, so the app exists by then; its
# database is created and migrated by the `real` fixture before the first request
# (Schemathesis starts the app's lifespan on its first call).
DB_DIR = Path(tempfile.mkdtemp(prefix="cxw-schemathesis-"))
atexit.register(shutil.rmtree, DB_DIR, True)  # also when the test is deselected
DB_URL = f"sqlite+aiosqlite:///{DB_DIR / 'api.db'}"
APP = create_app(make_settings(DB_URL))
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP

# Operations with rules the schema cannot express: refused with 422 `invalid` only.
SEMANTIC_422 = {
    "POST /api/workshops",
    "POST /api/workshops/{workshop_id}/participants",
    "POST /api/workshops/import",
    "GET /api/compare",
}
SERVICE_CODES = {"invalid", "invalid_export"}


@dataclass
class Real:
    token: str
    workshop_id: str
    join_code: str
    export: dict[str, Any] | None = None


async def _prepare() -> tuple[str, str, str]:
    engine = make_engine(DB_URL)
    await upgrade(engine)
    async with make_sessionmaker(engine)() as session:
        facilitator = await create_facilitator(session, "lead@agency.gov", "long password", "L")
        definition = load_definitions()["dhs-cx-maturity"]
        workshop = await create_workshop(
            session, facilitator_id=facilitator.id, definition=definition, title="Real one"
        )
        ids = facilitator.id, workshop.id, workshop.join_code
    await engine.dispose()
    return ids


@pytest.fixture(scope="module")
def real() -> Iterator[Real]:
    facilitator_id, workshop_id, join_code = asyncio.run(_prepare())
    yield Real(APP.state.codec.dumps(ACCESS, {"f": facilitator_id}), workshop_id, join_code)
    asgi.shutdown_lifespans()


def _coin(case: Any) -> bool:
    """Half of the cases, the same half on every run."""
    seed = repr((case.path_parameters, case.query, case.body)).encode()
    return zlib.crc32(seed) % 2 == 0


def _point_at_real_data(case: Any, real: Real, auth: dict[str, str]) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive or not _coin(case):
        return
    label = f"{case.method.upper()} {case.path}"
    query = case.query or {}
    # `table` with a format other than csv is valid by the schema and refused by the
    # service (tests/exports covers it): only the combinations it accepts go real.
    exportable = query.get("table") is None or query.get("format") == "csv"
    if "workshop_id" in (case.path_parameters or {}) and (
        exportable or not label.endswith("/export")
    ):
        case.path_parameters["workshop_id"] = real.workshop_id
    if label == "GET /api/compare":
        case.query = {**query, "workshop": [real.workshop_id]}
    if label == "POST /api/workshops/{workshop_id}/participants" and isinstance(case.body, dict):
        case.body["join_code"] = real.join_code
    if label == "POST /api/workshops/import":
        if real.export is None:
            exported = schema["/api/workshops/{workshop_id}/export"]["GET"].Case(
                path_parameters={"workshop_id": real.workshop_id}, query={"format": "json"}
            )
            real.export = exported.call(headers=auth).json()
        case.body = real.export


@schema.parametrize()
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any, real: Real) -> None:
    auth = {"Authorization": f"Bearer {real.token}"}
    _point_at_real_data(case, real, auth)
    # The attempt limits would otherwise turn later cases into 429s (tested elsewhere).
    APP.state.sign_in_limiter.reset()
    APP.state.join_limiter.reset()
    label = f"{case.method.upper()} {case.path}"
    if label not in SEMANTIC_422:
        case.call_and_validate(headers=auth)
        return
    response = case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])
    if case.meta is not None and case.meta.generation.mode.is_positive:
        if response.status_code == 422:
            body = response.json()
            assert isinstance(body.get("detail"), str), f"the schema let through: {body}"
            assert body.get("code") in SERVICE_CODES, body
        else:
            assert response.status_code < 400 or response.status_code in {401, 403, 404, 409, 429}
