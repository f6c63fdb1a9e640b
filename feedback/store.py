"""What users said about the bot's answers, kept for the owner's review: one code path on SQLite and PostgreSQL.

The tables and records are `schema.py`'s, re-exported here: callers import everything from `feedback.store`.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, event, exc
from sqlalchemy.pool import StaticPool

from .schema import (
    APPROVED,
    DEFAULT_FEEDBACK_DB,
    NEITHER,
    REJECTED,
    SCHEMA_VERSION,
    STATUSES,
    WAITING,
    ApprovedFace,
    FaceSample,
    ModelSaid,
    ReviewItem,
    SchemaTooNew,
    StoreUnavailable,
    Vote,
    engine_url,
    faces,
    metadata,
    schema_version,
    votes,
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
    "engine_url",
]

T = TypeVar("T")


def _keyed(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _majority(tally: list[tuple[str, int, datetime]]) -> str | None:
    """What most distinct users said (ties: the verdict given first); None for "neither" or no votes."""
    if not tally:
        return None
    verdict = min(tally, key=lambda t: (-t[1], t[2]))[0]
    return None if verdict == NEITHER else verdict


class FeedbackStore:
    """The faces users pressed a button on, their votes, and the owner's review of each."""

    def __init__(self, url: str, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the feedback key must be at least 16 bytes")
        self._key = key
        parsed = engine_url(url)
        self._shown_url = parsed.render_as_string(hide_password=True)
        self._password = parsed.password
        options: dict = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                # Left to fail: the first use reports the database as unavailable, as for any unreachable one.
                with suppress(OSError):
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                # Another process (the review CLI, a replica) may hold the write lock for a moment.
                options["connect_args"] = {"timeout": 30}
            else:
                # One in-memory database for every thread, not one each.
                options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        try:
            self._engine = sa.create_engine(parsed, **options)
        except (exc.ArgumentError, ImportError) as e:  # a database we have no driver for
            raise ValueError(f"FEEDBACK_DB {self._shown_url} cannot be used: {e}") from e
        if parsed.get_backend_name() == "sqlite":
            event.listen(self._engine, "connect", _sqlite_foreign_keys)
        self._ready = False
        self._ready_lock = threading.Lock()

    def close(self) -> None:
        """Close the database connections."""
        self._engine.dispose()

    # Plumbing: every database error leaves as StoreUnavailable, the schema is made on first use.

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        cause = getattr(error, "orig", None) or error
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        message = f"the feedback database {self._shown_url} is unavailable: {reason}"
        if self._password:
            message = message.replace(self._password, "***")
        return StoreUnavailable(message)

    def ensure_schema(self) -> None:
        """Create the tables if absent; `SchemaTooNew` for a database a newer doppelbot made."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                self._create_schema()
            except (exc.DBAPIError, exc.TimeoutError) as e:
                raise self._unavailable(e) from e
            self._ready = True

    def _create_schema(self) -> None:
        for attempt in range(2):
            try:
                metadata.create_all(self._engine)
                break
            except (exc.IntegrityError, exc.ProgrammingError):
                # Another replica created the same tables at the same moment: they exist now.
                if attempt:
                    raise
        with self._engine.begin() as conn:
            found = conn.scalar(sa.select(sa.func.max(schema_version.c.version)))
            if found is None:
                conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION))
            elif found > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the feedback database {self._shown_url} has schema version {found}, newer than this "
                    f"doppelbot understands ({SCHEMA_VERSION}): upgrade doppelbot, or point FEEDBACK_DB elsewhere"
                )

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        self.ensure_schema()
        try:
            with self._engine.begin() as conn:
                yield conn
        except exc.IntegrityError:
            raise
        except (exc.DBAPIError, exc.TimeoutError) as e:
            raise self._unavailable(e) from e

    def _retrying(self, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction, again once if a concurrent insert of the same row beat it."""
        try:
            with self._transaction() as conn:
                return work(conn)
        except exc.IntegrityError:
            try:
                with self._transaction() as conn:
                    return work(conn)
            except exc.IntegrityError as e:
                raise self._unavailable(e) from e

    def _read(self, work: Callable[[Connection], T]) -> T:
        try:
            with self._transaction() as conn:
                return work(conn)
        except exc.IntegrityError as e:
            raise self._unavailable(e) from e

    # Presses.

    def has_face(self, face_key: str) -> bool:
        """Whether a press already kept this face."""
        key_hash = _keyed(self._key, face_key)
        query = sa.select(faces.c.id).where(faces.c.face_key_hash == key_hash)
        return self._read(lambda conn: conn.scalar(query)) is not None

    def record(self, vote: Vote, sample: FaceSample | None) -> dict[str, int]:
        """Keep the vote (one per user and face; a second press replaces the first); the face's votes now."""
        if not vote.verdict or not vote.face_key:
            raise ValueError("a vote needs a face key and a verdict")
        key_hash = _keyed(self._key, vote.face_key)
        user_hash = _keyed(self._key, f"{vote.platform}:{vote.user}")

        def work(conn: Connection) -> dict[str, int]:
            now = _now()
            face_id = conn.scalar(sa.select(faces.c.id).where(faces.c.face_key_hash == key_hash))
            if face_id is None:
                if sample is None:
                    raise ValueError("the first press on a face must bring the face")
                said = sample.said
                row = {
                    "face_key_hash": key_hash,
                    "chip": sample.chip_jpeg,
                    "descriptor": sample.descriptor,
                    "model_label": said.label,
                    "model_confidence": float(said.confidence),
                    "model_distance": None if said.distance is None else float(said.distance),
                    "model_known": bool(said.known),
                    "model_date": said.model,
                    "platform": vote.platform,
                    "chat_kind": vote.chat_kind,
                    "created_at": now,
                    "status": WAITING,
                    "review_neither": False,
                }
                face_id = conn.execute(sa.insert(faces).values(**row)).inserted_primary_key[0]
            mine = (votes.c.face_id == face_id) & (votes.c.user_hash == user_hash)
            if conn.scalar(sa.select(sa.func.count()).select_from(votes).where(mine)):
                conn.execute(sa.update(votes).where(mine).values(verdict=vote.verdict, voted_at=now))
            else:
                conn.execute(
                    sa.insert(votes).values(face_id=face_id, user_hash=user_hash, verdict=vote.verdict, voted_at=now)
                )
            return _counts(conn, face_id)

        return self._retrying(work)

    def votes(self, face_key: str) -> dict[str, int]:
        """The face's votes: verdict -> distinct users; {} for a face nobody pressed."""
        key_hash = _keyed(self._key, face_key)

        def work(conn: Connection) -> dict[str, int]:
            face_id = conn.scalar(sa.select(faces.c.id).where(faces.c.face_key_hash == key_hash))
            return {} if face_id is None else _counts(conn, face_id)

        return self._read(work)

    # Review.

    def items(self, status: str | None = WAITING) -> list[ReviewItem]:
        """The kept faces with `status` (None: all), oldest first."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")

        def work(conn: Connection) -> list[ReviewItem]:
            query = sa.select(*(c for c in faces.c if c.name not in ("chip", "descriptor")))
            if status is not None:
                query = query.where(faces.c.status == status)
            rows = conn.execute(query.order_by(faces.c.created_at, faces.c.id)).all()
            tallies = _tallies(conn, [r.id for r in rows])
            return [_item(r, tallies.get(r.id, [])) for r in rows]

        return self._read(work)

    def chip(self, face_id: int) -> bytes | None:
        """The face's chip as a JPEG; None for an unknown id."""
        return self._read(lambda c: c.scalar(sa.select(faces.c.chip).where(faces.c.id == face_id)))

    def approve(self, ids: Sequence[int]) -> int:
        """Approve these faces with the label they carry now; how many changed (unknown ids are not counted)."""
        ids = sorted({int(i) for i in ids})
        return self._retrying(lambda conn: _approve(conn, ids)) if ids else 0

    def reject(self, ids: Sequence[int]) -> int:
        """Reject these faces (never trained on); how many changed."""
        ids = sorted({int(i) for i in ids})
        if not ids:
            return 0
        query = (
            sa.update(faces)
            .where(faces.c.id.in_(ids), faces.c.status != REJECTED)
            .values(status=REJECTED, reviewed_at=_now())
        )
        return self._retrying(lambda conn: conn.execute(query).rowcount)

    def relabel(self, face_id: int, label: str | None) -> bool:
        """Set the owner's label (None or "neither": a known stranger) and approve; False for an unknown id."""
        neither = label is None or label == NEITHER
        values = {
            "review_label": None if neither else label,
            "review_neither": neither,
            "status": APPROVED,
            "reviewed_at": _now(),
        }
        query = sa.update(faces).where(faces.c.id == int(face_id)).values(**values)
        return self._retrying(lambda conn: conn.execute(query).rowcount) == 1

    def approve_agreed(self, n: int) -> list[int]:
        """Approve the waiting faces at least `n` distinct users agree on and nobody disputes; their ids."""
        if n < 1:
            raise ValueError("approve_agreed needs at least one user")

        def work(conn: Connection) -> list[int]:
            agreed = (
                sa.select(votes.c.face_id)
                .join(faces, faces.c.id == votes.c.face_id)
                .where(faces.c.status == WAITING)
                .group_by(votes.c.face_id)
                .having(sa.func.count(sa.distinct(votes.c.verdict)) == 1)
                .having(sa.func.count() >= n)
                .order_by(votes.c.face_id)
            )
            ids = list(conn.scalars(agreed))
            _approve(conn, ids)
            return ids

        return self._retrying(work)

    def approved(self) -> list[ApprovedFace]:
        """The approved faces, with the label the owner approved: all that training may use."""

        def work(conn: Connection) -> list[ApprovedFace]:
            query = sa.select(faces).where(faces.c.status == APPROVED).order_by(faces.c.id)
            return [
                ApprovedFace(
                    id=r.id,
                    label=None if r.review_neither else r.review_label,
                    chip_jpeg=r.chip,
                    descriptor=r.descriptor,
                )
                for r in conn.execute(query)
            ]

        return self._read(work)

    # Users' rights and housekeeping.

    def forget(self, platform: str, user: str) -> int:
        """Delete the user's votes and every face left without a vote; how many faces the user had marked."""
        user_hash = _keyed(self._key, f"{platform}:{user}")

        def work(conn: Connection) -> int:
            marked = list(conn.scalars(sa.select(votes.c.face_id).where(votes.c.user_hash == user_hash)))
            if not marked:
                return 0
            conn.execute(sa.delete(votes).where(votes.c.user_hash == user_hash))
            voted = sa.select(votes.c.face_id).where(votes.c.face_id == faces.c.id).exists()
            conn.execute(sa.delete(faces).where(faces.c.id.in_(marked), ~voted))
            return len(marked)

        return self._retrying(work)

    def purge(self, keep_days: float, now: datetime | None = None) -> int:
        """Delete the waiting faces first pressed more than `keep_days` ago, with their votes; how many."""
        cutoff = (now or _now()) - timedelta(days=keep_days)
        old = (faces.c.status == WAITING) & (faces.c.created_at < cutoff)

        def work(conn: Connection) -> int:
            ids = list(conn.scalars(sa.select(faces.c.id).where(old)))
            if not ids:
                return 0
            # Votes first as well as by the cascade: a database made without foreign keys still loses them.
            conn.execute(sa.delete(votes).where(votes.c.face_id.in_(ids)))
            return conn.execute(sa.delete(faces).where(faces.c.id.in_(ids))).rowcount

        return self._retrying(work)

    def tally(self, model: str | None) -> dict[str, int]:
        """Votes on the faces `model` answered: {"right": n, "wrong": n, "neither": n}."""
        same_model = faces.c.model_date.is_(None) if model is None else faces.c.model_date == model
        query = (
            sa.select(votes.c.verdict, faces.c.model_label, sa.func.count())
            .join(faces, faces.c.id == votes.c.face_id)
            .where(same_model)
            .group_by(votes.c.verdict, faces.c.model_label)
        )

        def work(conn: Connection) -> dict[str, int]:
            tally = {"right": 0, "wrong": 0, "neither": 0}
            for verdict, model_label, count in conn.execute(query):
                kind = "neither" if verdict == NEITHER else "right" if verdict == model_label else "wrong"
                tally[kind] += count
            return tally

        return self._read(work)


def _sqlite_foreign_keys(dbapi_connection, _record) -> None:
    # SQLite enforces foreign keys (and so ON DELETE CASCADE) only when each connection asks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _counts(conn: Connection, face_id: int) -> dict[str, int]:
    query = sa.select(votes.c.verdict, sa.func.count()).where(votes.c.face_id == face_id).group_by(votes.c.verdict)
    return {verdict: count for verdict, count in conn.execute(query)}


def _tallies(conn: Connection, ids: list[int]) -> dict[int, list[tuple[str, int, datetime]]]:
    """Per face: (verdict, distinct users, first said), for the faces `ids`."""
    tallies: dict[int, list[tuple[str, int, datetime]]] = {}
    # In slices: a database bounds the parameters of one statement (SQLite's default is 32766, old ones 999).
    for start in range(0, len(ids), 500):
        query = (
            sa.select(votes.c.face_id, votes.c.verdict, sa.func.count(), sa.func.min(votes.c.voted_at))
            .where(votes.c.face_id.in_(ids[start : start + 500]))
            .group_by(votes.c.face_id, votes.c.verdict)
        )
        for face_id, verdict, count, first in conn.execute(query):
            tallies.setdefault(face_id, []).append((verdict, count, _aware(first)))
    return tallies


def _aware(value: datetime | str) -> datetime:
    # min() over a column loses its type on SQLite, which hands back the stored text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _item(row, tally: list[tuple[str, int, datetime]]) -> ReviewItem:
    label = None if row.review_neither else row.review_label or _majority(tally)
    return ReviewItem(
        id=row.id,
        label=label,
        model_label=row.model_label,
        model_confidence=row.model_confidence,
        model_distance=row.model_distance,
        model_known=row.model_known,
        model=row.model_date,
        votes={verdict: count for verdict, count, _ in sorted(tally, key=lambda t: (-t[1], t[2]))},
        status=row.status,
        platform=row.platform,
        chat_kind=row.chat_kind,
        created_at=row.created_at,
    )


def _approve(conn: Connection, ids: list[int]) -> int:
    """Approve `ids`, fixing each one's label as it stands: later votes must not change what training learns."""
    if not ids:
        return 0
    rows = conn.execute(
        sa.select(faces.c.id, faces.c.review_label, faces.c.review_neither).where(
            faces.c.id.in_(ids), faces.c.status != APPROVED
        )
    ).all()
    tallies = _tallies(conn, [r.id for r in rows])
    now = _now()
    for row in rows:
        if row.review_label is not None or row.review_neither:
            values = {}
        else:
            label = _majority(tallies.get(row.id, []))
            values = {"review_label": label, "review_neither": label is None}
        conn.execute(sa.update(faces).where(faces.c.id == row.id).values(status=APPROVED, reviewed_at=now, **values))
    return len(rows)
