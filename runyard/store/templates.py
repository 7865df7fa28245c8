"""Templates: an organization's own, and the read-only system ones (``org_id`` NULL)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import Template


def find_template(session: Session, org_id: str, slug: str) -> Template | None:
    """The organization's template named ``slug``, else the system one (synchronous: it
    runs inside ``Database.read``)."""
    rows = session.execute(
        select(Template).where(
            col(Template.slug) == slug,
            (col(Template.org_id) == org_id) | col(Template.org_id).is_(None),
        )
    ).scalars()
    found = sorted(rows, key=lambda t: t.org_id is None)
    return found[0] if found else None
