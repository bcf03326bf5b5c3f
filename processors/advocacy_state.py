"""What an account remembers for the advocacy metrics: recent survey answers and invitations."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct


class SurveyFact(Struct, frozen=True, gc=False, array_like=True):
    """One survey answer, kept for the longest window."""

    event_id: str
    at: datetime
    score: int
    channel: str
    """The bounded segment (`segment_of`), never free text."""
    ces: int | None = None


class InviteFact(Struct, frozen=True, gc=False, array_like=True):
    """One invitation sent by this customer, kept for the longest window."""

    event_id: str
    at: datetime


class AdvocacyState(Struct, frozen=True, gc=False, array_like=True):
    """Survey answers and invitations sent within the longest advocacy window."""

    surveys: tuple[SurveyFact, ...] = ()
    invites: tuple[InviteFact, ...] = ()
