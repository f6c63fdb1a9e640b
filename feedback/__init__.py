"""Users' verdicts on the bot's answers, kept for the owner's review before anything reaches training."""

from __future__ import annotations

from .keys import feedback_key
from .store import (
    APPROVED,
    DEFAULT_FEEDBACK_DB,
    NEITHER,
    REJECTED,
    SCHEMA_VERSION,
    STATUSES,
    WAITING,
    ApprovedFace,
    FaceSample,
    FeedbackStore,
    ModelSaid,
    ReviewItem,
    SchemaTooNew,
    StoreUnavailable,
    Vote,
)

__all__ = [
    "APPROVED",
    "DEFAULT_FEEDBACK_DB",
    "NEITHER",
    "REJECTED",
    "SCHEMA_VERSION",
    "STATUSES",
    "WAITING",
    "ApprovedFace",
    "FaceSample",
    "FeedbackStore",
    "ModelSaid",
    "ReviewItem",
    "SchemaTooNew",
    "StoreUnavailable",
    "Vote",
    "feedback_key",
]
