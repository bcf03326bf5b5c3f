"""What an account remembers for the advocacy metrics: recent survey answers and invitations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SurveyFact:
    """One survey answer, kept for the longest window."""

    event_id: str
    at: datetime
    score: int
    channel: str
    """The bounded segment (`segment_of`), never free text."""
    ces: int | None = None


@dataclass(frozen=True, slots=True)
class InviteFact:
    """One invitation sent by this customer, kept for the longest window."""

    event_id: str
    at: datetime
