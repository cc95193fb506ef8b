"""Notes written without a position get one of their own, so a busy room stays legible."""

from __future__ import annotations

from app.services.live.participation import SPOTS, spot
from tests.realtime.conftest import Workshop


async def test_notes_without_a_position_do_not_land_on_each_other(workshop: Workshop) -> None:
    fac = await workshop.facilitator()
    await fac.do("workshop.start")
    await fac.do("phase.goto", index=4)  # Measurement: Reflect
    _, ann = await workshop.participant("Ann")
    for i in range(30):
        await ann.do("note.create", area="now", text=f"Note {i}")
    await ann.do("note.create", area="hope", text="Elsewhere")
    created = [e["note"] for e in ann.events() if e["type"] == "note.created"]
    now = [(n["x"], n["y"]) for n in created if n["area"] == "now"]
    assert len(now) == 30
    assert len(set(now)) == 30, "two notes share a spot"
    assert all(0 <= x <= 0.6 and 0 <= y <= 0.9 for x, y in now)  # a note's width fits right
    hope = [(n["x"], n["y"]) for n in created if n["area"] == "hope"]
    assert hope == [now[0]], "each area fills from its own top-left corner"


def test_the_spots_table_is_the_grid_in_one_cycle() -> None:
    """PostgreSQL's `live_note_create` takes the grid as this table (pg_lane.py)."""
    assert len(SPOTS) == 48
    assert [spot(n) for n in range(200)] == [SPOTS[n % 48] for n in range(200)]
