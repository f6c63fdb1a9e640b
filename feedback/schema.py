"""The feedback database's shape: its tables (one schema on SQLite and PostgreSQL, versioned in the database
itself), the records the store hands out, and the URL rules. No connection is made here: `store.py` does that."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import make_url

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
    "ModelSaid",
    "ReviewItem",
    "SchemaTooNew",
    "StoreUnavailable",
    "Vote",
    "engine_url",
    "faces",
    "metadata",
    "schema_version",
    "votes",
]

NEITHER = "neither"
SCHEMA_VERSION = 1
DEFAULT_FEEDBACK_DB = "sqlite:///data/feedback.sqlite3"
WAITING, APPROVED, REJECTED = "waiting", "approved", "rejected"
STATUSES = (WAITING, APPROVED, REJECTED)


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the write: the press is lost, the user is told."""


class SchemaTooNew(StoreUnavailable):
    """The database was made by a newer doppelbot: writing to it could corrupt what that version keeps."""


@dataclass(frozen=True)
class ModelSaid:
    """What the model answered for the face."""

    label: str
    confidence: float
    distance: float | None
    known: bool
    model: str | None


@dataclass(frozen=True)
class FaceSample:
    """The face as kept at the first press: never the whole photo."""

    chip_jpeg: bytes
    descriptor: bytes | None
    said: ModelSaid


@dataclass(frozen=True)
class Vote:
    """One user's verdict on one face of one answer."""

    face_key: str
    verdict: str
    platform: str
    chat_kind: str
    user: str


@dataclass(frozen=True)
class ReviewItem:
    """A kept face as the owner reviews it."""

    id: int
    label: str | None
    model_label: str
    model_confidence: float
    model_distance: float | None
    model_known: bool
    model: str | None
    votes: dict[str, int]
    status: str
    platform: str
    chat_kind: str
    created_at: datetime

    def to_json(self) -> dict:
        """The item as plain JSON values (`created_at` as an ISO string)."""
        return {
            "id": self.id,
            "label": self.label,
            "model_label": self.model_label,
            "model_confidence": self.model_confidence,
            "model_distance": self.model_distance,
            "model_known": self.model_known,
            "model": self.model,
            "votes": dict(self.votes),
            "status": self.status,
            "platform": self.platform,
            "chat_kind": self.chat_kind,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class ApprovedFace:
    """A face the owner vouched for: what training may use."""

    id: int
    label: str | None
    chip_jpeg: bytes
    descriptor: bytes | None


class _UtcDateTime(sa.TypeDecorator):
    """Aware UTC datetimes in and out: SQLite keeps no time zone, so naive values read back are UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()
schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))
faces = sa.Table(
    "faces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("face_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("chip", sa.LargeBinary, nullable=False),
    sa.Column("descriptor", sa.LargeBinary, nullable=True),
    sa.Column("model_label", sa.String(200), nullable=False),
    sa.Column("model_confidence", sa.Float, nullable=False),
    sa.Column("model_distance", sa.Float, nullable=True),
    sa.Column("model_known", sa.Boolean, nullable=False),
    sa.Column("model_date", sa.String(64), nullable=True),
    sa.Column("platform", sa.String(32), nullable=False),
    sa.Column("chat_kind", sa.String(32), nullable=False),
    sa.Column("created_at", _UtcDateTime, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, default=WAITING, index=True),
    sa.Column("review_label", sa.String(200), nullable=True),
    sa.Column("review_neither", sa.Boolean, nullable=False, default=False),
    sa.Column("reviewed_at", _UtcDateTime, nullable=True),
)
votes = sa.Table(
    "votes",
    metadata,
    sa.Column("face_id", sa.Integer, sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_hash", sa.String(64), primary_key=True),
    sa.Column("verdict", sa.String(200), nullable=False),
    sa.Column("voted_at", _UtcDateTime, nullable=False),
    sa.Index("votes_by_user", "user_hash"),
)


def engine_url(url: str) -> sa.URL:
    """`url` with a driver we install: `postgresql://` (and Heroku's `postgres://`) means psycopg 3."""
    try:
        parsed = make_url("postgresql" + url[len("postgres") :] if url.startswith("postgres://") else url)
    except exc.ArgumentError:
        # Not the URL itself in the message: it may hold a password.
        raise ValueError("FEEDBACK_DB is not a database URL: sqlite:///PATH or postgresql://...") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed
