"""What a page shows of a live workshop: the snapshot, arranged for templates.

Pages render the same state the socket's snapshot carries, for the same audience,
so a reload and a live update never disagree about what someone may see.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import HTTPException, Request

from app.db.engine import begin_consistent_read
from app.db.models import Workshop
from app.realtime.messages import Audience
from app.services.live.engine import LiveService
from app.services.live.snapshot import build_snapshot

CHOICES = (("do", "We do this"), ("dont", "We don't"), ("unsure", "Not sure"))


async def room_view(
    request: Request,
    workshop: Workshop,
    audience: Audience,
    participant_id: str | None,
) -> dict[str, Any]:
    """What a room page shows, read in one moment with its own session. The caller
    must hold no database connection meanwhile (close its session first): pages
    holding one while waiting for another would exhaust the pool together."""
    live: LiveService = request.app.state.live
    definition, phases = live.cache.get(workshop)
    presence = await request.app.state.rooms.presence.read(workshop.id)
    # The page's seq and the rows it shows come from one moment (events after it
    # arrive over the socket exactly once).
    async with request.app.state.sessionmaker() as reader:
        await begin_consistent_read(reader)
        current = await reader.get(Workshop, workshop.id)
        if current is None:
            raise HTTPException(404, "no such workshop")
        s = await build_snapshot(
            reader, current, definition, phases, audience, participant_id, presence
        )
    phase = s["workshop"]["phase"]
    fid = phase["function_id"]
    function = next((f for f in s["definition"]["functions"] if f["id"] == fid), None)
    level_names = [lv["name"] for lv in s["definition"]["scale"]]
    notes_by_area: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for note in s["notes"]:
        if note["function_id"] == fid:
            notes_by_area[note["area"]].append(note)
    for notes in notes_by_area.values():
        notes.sort(key=lambda n: (-n["dots"], n["y"], n["x"]))
    groups_by_area: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for group in s["groups"]:
        if group["function_id"] == fid:
            groups_by_area[group["area"]].append(group)
    rnd = s["progress"]["rounds"].get(fid, 1) if fid else None
    cards_key, level_key = f"cards:{fid}", f"level:{fid}:{rnd}"
    me = s["me"] or {}
    budget = None
    used = 0
    if phase["kind"] == "prioritise":
        budget = s["workshop"]["phase_budgets"].get(phase["key"], phase["dot_budget"])
        if budget is None:
            budget = s["workshop"]["dot_budget"]
        used = sum(me.get("dots", {}).values())
    card_titles = {c["id"]: c["title"] for f in s["definition"]["functions"] for c in f["cards"]}
    return {
        "s": s,
        "workshop": current,
        "audience": audience,
        "phase": phase,
        "function": function,
        "level_names": level_names,
        "notes_by_area": notes_by_area,
        "groups_by_area": groups_by_area,
        "round": rnd,
        "cards_revealed": cards_key in s["workshop"]["revealed"],
        "card_results": s["results"].get(cards_key),
        "level_revealed": level_key in s["workshop"]["revealed"],
        "level_result": s["results"].get(level_key),
        "me": me,
        "my_level": me.get("level_votes", {}).get(f"{fid}:{rnd}"),
        "dot_budget": budget,
        "dots_left": None if budget is None else max(0, budget - used),
        "choices": CHOICES,
        "card_titles": card_titles,
        "level_name_by_id": {lv["id"]: lv["name"] for lv in s["definition"]["scale"]},
        "names": {p["id"]: p["display_name"] or "A participant" for p in s["participants"]},
        "areas": s["definition"]["board"]["areas"],
        "function_names": {f["id"]: f["name"] for f in s["definition"]["functions"]},
        "colours": s["definition"]["board"]["colours"],
        "is_facilitator": audience == "facilitator",
        "is_projector": audience == "projector",
    }
