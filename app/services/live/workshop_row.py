"""The workshop row as a facilitator's command sees and changes it.

Facilitator commands change the workshop itself (its state, phase, timer, what is
revealed). They used to load it as an ORM `Workshop` and let the session flush it at
commit: the object's construction, its identity map entry, the unit of work and the
flush's own statement cost several times what the database spent on the row (about
a third of a facilitator command, docs/benchmarks.md change 25).

`WorkshopRow` is a plain object with the row's columns (all but the definition
snapshot, which `LiveService` keeps parsed in its cache). A command sets its
attributes as it would an ORM object's; `changes()` lists the columns whose values
differ from the ones loaded, and `save()` gives the prebuilt `UPDATE` of just those
columns with its parameters, so that both the usual path and the lane run it as a plan.

Unlike the ORM with a plain JSON column, a list or dict changed in place counts as
a change too: the loaded values are compared with copies of them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.sql.dml import Update

from app.db.models import Workshop, table_of

_TABLE = table_of(Workshop)
# Every column but the definition snapshot (about 12 KB of JSON that never changes).
COLUMNS: tuple[str, ...] = tuple(c.name for c in _TABLE.c if c.name != "definition")
_KEY = "id"


class WorkshopRow:
    """A workshop's columns (see the module's docstring); set attributes, then run
    `save()`."""

    __slots__ = (*COLUMNS, "_loaded")

    def __init__(self, values: Sequence[Any]) -> None:
        """`values`: the row's columns in the order of `COLUMNS` (more are ignored)."""
        loaded = tuple(values[: len(COLUMNS)])
        if len(loaded) != len(COLUMNS):
            raise ValueError(f"a workshop row has {len(COLUMNS)} columns, not {len(loaded)}")
        for name, value in zip(COLUMNS, loaded, strict=True):
            setattr(self, name, value)
        # JSON values are lists and dicts: keep copies to compare with.
        self._loaded = tuple(
            copy.deepcopy(value) if isinstance(value, list | dict) else value for value in loaded
        )

    def changes(self) -> dict[str, Any]:
        """The columns set to another value since the row was loaded."""
        return {
            name: getattr(self, name)
            for name, old in zip(COLUMNS, self._loaded, strict=True)
            if name != _KEY and getattr(self, name) != old
        }

    def save(self) -> tuple[Update, dict[str, Any]] | None:
        """The prebuilt `UPDATE` of the changed columns and its parameters; None when
        nothing changed."""
        changes = self.changes()
        if not changes:
            return None
        params = {f"w_{name}": value for name, value in changes.items()}
        params["w_key"] = getattr(self, _KEY)
        return _save_statement(tuple(changes)), params

    def __repr__(self) -> str:
        return f"WorkshopRow(id={getattr(self, _KEY)!r})"


@functools.lru_cache(maxsize=256)
def _save_statement(names: tuple[str, ...]) -> Update:
    """`UPDATE workshop SET <names> WHERE id = :w_key`, built once per set of columns
    (each parameter is `w_<column>`, typed as its column)."""
    return (
        update(_TABLE)
        .where(_TABLE.c[_KEY] == bindparam("w_key"))
        .values({name: bindparam(f"w_{name}", type_=_TABLE.c[name].type) for name in names})
    )
