"""The feedback store: the same cases on SQLite and on a real PostgreSQL started for the tests."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from feedback import (
    NEITHER,
    SCHEMA_VERSION,
    FaceSample,
    FeedbackStore,
    ModelSaid,
    SchemaTooNew,
    StoreUnavailable,
    Vote,
    feedback_key,
)
from feedback import schema as tables
from feedback.store import engine_url
from testkit.postgres_server import PostgresServer
from testkit.processes import free_port

KEY = b"a key of the tests, long enough"
JESSICA, BRYCE = "Jessica Chastain", "Bryce Dallas Howard"
MODEL = "2024-05-01T12:00:00+00:00"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/feedback.sqlite3"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def store(url: str) -> Iterator[FeedbackStore]:
    store = FeedbackStore(url, KEY)
    yield store
    store.close()


def sample(label: str = JESSICA, model: str | None = MODEL, chip: bytes = b"\xff\xd8chip\xff\xd9") -> FaceSample:
    descriptor = bytes(range(256)) * 2  # 128 float32s' worth of bytes
    return FaceSample(chip, descriptor, ModelSaid(label, 0.87, 0.42, True, model))


def vote(face: str, verdict: str, user: str, platform: str = "telegram", chat_kind: str = "group") -> Vote:
    return Vote(face, verdict, platform, chat_kind, user)


def rows(url: str, table: str) -> list[dict]:
    """A table's rows, read with no help from the store."""
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()


def execute(url: str, statement: sa.Executable) -> None:
    """Change the tables behind the store's back (to age a face, or to play a newer doppelbot)."""
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    finally:
        engine.dispose()


def test_the_first_press_keeps_the_face_and_a_second_press_by_the_same_user_replaces_the_vote(
    store: FeedbackStore, url: str
) -> None:
    assert not store.has_face("telegram:1:10:1")
    assert store.votes("telegram:1:10:1") == {}
    with pytest.raises(ValueError):
        store.record(vote("telegram:1:10:1", BRYCE, "1"), None)  # a new face needs its sample
    assert not store.has_face("telegram:1:10:1")

    assert store.record(vote("telegram:1:10:1", BRYCE, "1"), sample(chip=b"first")) == {BRYCE: 1}
    assert store.has_face("telegram:1:10:1")
    # The same user changes their mind: one vote, the new one; the face kept is still the first press's.
    assert store.record(vote("telegram:1:10:1", NEITHER, "1"), sample(chip=b"second")) == {NEITHER: 1}
    assert store.record(vote("telegram:1:10:1", JESSICA, "1"), None) == {JESSICA: 1}
    (item,) = store.items()
    assert item.votes == {JESSICA: 1}
    assert store.chip(item.id) == b"first"
    assert store.chip(item.id + 1000) is None
    assert len(rows(url, "votes")) == 1


def test_votes_from_several_users_in_a_group_count_each_user_once(store: FeedbackStore) -> None:
    face = "telegram:-1001:20:2"
    store.record(vote(face, BRYCE, "1"), sample())
    store.record(vote(face, BRYCE, "2"), None)
    store.record(vote(face, BRYCE, "2"), None)  # pressed twice: still one user
    store.record(vote(face, NEITHER, "3"), None)
    # The same number on another platform is another person.
    assert store.record(vote(face, BRYCE, "1", platform="discord", chat_kind="guild"), None) == {BRYCE: 3, NEITHER: 1}
    assert store.votes(face) == {BRYCE: 3, NEITHER: 1}
    assert store.votes("telegram:-1001:20:1") == {}  # the photo's other face: nobody pressed it


def test_items_come_oldest_first_with_what_most_users_said(store: FeedbackStore) -> None:
    store.record(vote("web:a:1", BRYCE, "1", "web", "page"), sample(JESSICA))
    store.record(vote("web:a:1", BRYCE, "2", "web", "page"), None)
    store.record(vote("web:a:1", JESSICA, "3", "web", "page"), None)
    store.record(vote("web:b:1", NEITHER, "1"), sample(BRYCE, model=None))
    store.record(vote("web:b:1", NEITHER, "2"), None)
    store.record(vote("web:c:1", JESSICA, "1", "discord", "dm"), sample(JESSICA))

    first, second, third = store.items()
    assert (first.label, first.votes) == (BRYCE, {BRYCE: 2, JESSICA: 1})
    assert (first.model_label, first.model_confidence, first.model_distance, first.model_known) == (
        JESSICA,
        0.87,
        0.42,
        True,
    )
    assert (first.platform, first.chat_kind, first.model) == ("web", "page", MODEL)
    assert (second.label, second.model_label, second.model) == (None, BRYCE, None)  # "neither" is null
    assert (third.label, third.platform, third.chat_kind) == (JESSICA, "discord", "dm")
    assert first.created_at <= second.created_at <= third.created_at
    assert first.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - first.created_at) < timedelta(hours=1)

    as_json = first.to_json()
    assert set(as_json) >= {"id", "label", "model_label", "votes", "status", "created_at"}
    assert as_json["status"] == "waiting" and as_json["votes"] == {BRYCE: 2, JESSICA: 1}
    assert datetime.fromisoformat(as_json["created_at"]) == first.created_at
    with pytest.raises(ValueError):
        store.items("pending")


def test_approve_reject_and_relabel_change_only_the_faces_named(store: FeedbackStore) -> None:
    for n in range(1, 5):
        store.record(vote(f"telegram:1:30:{n}", BRYCE, "1"), sample(JESSICA))
    a, b, c, d = (item.id for item in store.items())

    assert store.approve([a, 999_999]) == 1  # the unknown id is not counted
    assert store.approve([a]) == 0  # already approved
    assert store.reject([b]) == 1
    assert store.relabel(c, JESSICA)
    assert store.relabel(d, NEITHER)
    assert not store.relabel(999_999, JESSICA)
    assert store.approve([]) == 0 and store.reject([]) == 0

    assert store.items() == []
    status = {item.id: (item.status, item.label) for item in store.items(None)}
    assert status == {
        a: ("approved", BRYCE),
        b: ("rejected", BRYCE),
        c: ("approved", JESSICA),
        d: ("approved", None),
    }
    assert [i.id for i in store.items("rejected")] == [b]
    assert store.relabel(b, None)  # the owner changes their mind: a rejected face approved as "neither"
    assert {f.id: f.label for f in store.approved()} == {a: BRYCE, b: None, c: JESSICA, d: None}


def test_approve_agreed_takes_only_undisputed_faces_enough_users_agree_on(store: FeedbackStore) -> None:
    store.record(vote("f:agreed", BRYCE, "1"), sample())
    store.record(vote("f:agreed", BRYCE, "2"), None)
    store.record(vote("f:alone", BRYCE, "1"), sample())
    store.record(vote("f:disputed", BRYCE, "1"), sample())
    store.record(vote("f:disputed", BRYCE, "2"), None)
    store.record(vote("f:disputed", NEITHER, "3"), None)
    store.record(vote("f:neither", NEITHER, "1"), sample())
    store.record(vote("f:neither", NEITHER, "2"), None)
    store.record(vote("f:rejected", BRYCE, "1"), sample())
    store.record(vote("f:rejected", BRYCE, "2"), None)
    agreed, alone, disputed, neither, rejected = (item.id for item in store.items())
    store.reject([rejected])

    assert store.approve_agreed(2) == [agreed, neither]
    assert store.approve_agreed(2) == []
    assert {item.id for item in store.items()} == {alone, disputed}
    assert {f.id: f.label for f in store.approved()} == {agreed: BRYCE, neither: None}
    assert store.approve_agreed(1) == [alone]
    with pytest.raises(ValueError):
        store.approve_agreed(0)


def test_training_gets_only_approved_faces_with_the_label_the_owner_approved(store: FeedbackStore) -> None:
    store.record(vote("f:1", BRYCE, "1"), sample(chip=b"one"))
    store.record(vote("f:2", BRYCE, "1"), sample(chip=b"two"))
    store.record(vote("f:3", BRYCE, "1"), sample(chip=b"three"))
    one, two, _three = (item.id for item in store.items())
    assert store.approved() == []  # nothing unreviewed, ever
    store.approve([one])
    store.reject([two])

    (face,) = store.approved()
    assert (face.id, face.label, face.chip_jpeg) == (one, BRYCE, b"one")
    assert face.descriptor == sample().descriptor
    # Votes after the review are kept but do not change what the owner approved.
    store.record(vote("f:1", JESSICA, "2"), None)
    store.record(vote("f:1", JESSICA, "3"), None)
    assert store.votes("f:1") == {BRYCE: 1, JESSICA: 2}
    assert [f.label for f in store.approved()] == [BRYCE]
    assert {item.id: item.status for item in store.items(None)}[one] == "approved"


def test_forget_removes_exactly_that_users_votes_and_the_faces_only_they_marked(store: FeedbackStore, url: str) -> None:
    store.record(vote("f:mine", BRYCE, "1"), sample())
    store.record(vote("f:shared", BRYCE, "1"), sample())
    store.record(vote("f:shared", JESSICA, "2"), None)
    store.record(vote("f:theirs", NEITHER, "2"), sample())
    store.record(vote("f:discord", NEITHER, "1", platform="discord"), sample())  # another platform's user 1
    store.approve([item.id for item in store.items()][:1])  # approved faces are the user's too

    assert store.forget("telegram", "1") == 2
    assert not store.has_face("f:mine")
    assert store.votes("f:shared") == {JESSICA: 1}
    assert store.votes("f:theirs") == {NEITHER: 1}
    assert store.votes("f:discord") == {NEITHER: 1}
    assert len(rows(url, "faces")) == 3 and len(rows(url, "votes")) == 3
    assert store.forget("telegram", "1") == 0
    assert store.forget("telegram", "nobody") == 0


def test_purge_removes_only_old_faces_nobody_reviewed(store: FeedbackStore, url: str) -> None:
    for face in ("f:old", "f:old-approved", "f:new"):
        store.record(vote(face, BRYCE, "1"), sample())
        store.record(vote(face, BRYCE, "2"), None)
    old, old_approved, new = (item.id for item in store.items())
    store.approve([old_approved])
    long_ago = datetime.now(UTC) - timedelta(days=100)
    execute(url, sa.update(tables.faces).where(tables.faces.c.id.in_([old, old_approved])).values(created_at=long_ago))

    assert store.purge(90) == 1
    assert {item.id for item in store.items(None)} == {old_approved, new}
    assert {r["face_id"] for r in rows(url, "votes")} == {old_approved, new}  # its votes went with it
    assert store.purge(90) == 0
    # From a year on, the new face is old too.
    assert store.purge(90, now=datetime.now(UTC) + timedelta(days=365)) == 1
    assert [item.id for item in store.items(None)] == [old_approved]


def test_tally_counts_right_wrong_and_neither_for_one_model(store: FeedbackStore) -> None:
    store.record(vote("f:1", JESSICA, "1"), sample(JESSICA))
    store.record(vote("f:1", JESSICA, "2"), None)
    store.record(vote("f:1", BRYCE, "3"), None)
    store.record(vote("f:2", NEITHER, "1"), sample(BRYCE))
    store.record(vote("f:3", JESSICA, "1"), sample(BRYCE, model="2023-01-01T00:00:00+00:00"))
    store.record(vote("f:4", BRYCE, "1"), sample(BRYCE, model=None))

    assert store.tally(MODEL) == {"right": 2, "wrong": 1, "neither": 1}
    assert store.tally("2023-01-01T00:00:00+00:00") == {"right": 0, "wrong": 1, "neither": 0}
    assert store.tally(None) == {"right": 1, "wrong": 0, "neither": 0}
    assert store.tally("1999-01-01") == {"right": 0, "wrong": 0, "neither": 0}


def test_the_tables_hold_no_raw_user_or_chat_id(store: FeedbackStore, url: str) -> None:
    user, chat = "424242424", "-100987654321"
    store.record(vote(f"telegram:{chat}:777001:1", BRYCE, user), sample())
    store.record(vote(f"telegram:{user}:777002:1", BRYCE, user, chat_kind="private"), sample())  # private: chat=user
    faces, votes = rows(url, "faces"), rows(url, "votes")
    assert len(faces) == 2 and len(votes) == 2
    text = repr(faces + votes)
    for secret in (user, "987654321", "777001", "777002"):
        assert secret not in text
    for row in faces:
        assert len(row["face_key_hash"]) == 64 and int(row["face_key_hash"], 16) >= 0
    assert {len(row["user_hash"]) for row in votes} == {64}
    assert len({row["user_hash"] for row in votes}) == 1  # one user, found again by /forget
    assert store.forget("telegram", user) == 2


def test_presses_at_the_same_moment_on_a_new_face_keep_one_face_and_every_vote(store: FeedbackStore) -> None:
    users = [str(n) for n in range(6)]
    start = threading.Barrier(len(users))
    errors: list[BaseException] = []

    def press(user: str) -> None:
        start.wait()
        try:
            store.record(vote("f:busy", BRYCE, user), sample())
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=press, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.votes("f:busy") == {BRYCE: len(users)}
    assert len(store.items()) == 1


def test_a_database_made_by_a_newer_doppelbot_is_refused(store: FeedbackStore, url: str) -> None:
    store.record(vote("f:1", BRYCE, "1"), sample())
    assert rows(url, "schema_version") == [{"version": SCHEMA_VERSION}]
    execute(url, sa.update(tables.schema_version).values(version=SCHEMA_VERSION + 1))

    newer = FeedbackStore(url, KEY)
    try:
        with pytest.raises(SchemaTooNew, match="newer than this doppelbot") as refused:
            newer.record(vote("f:1", JESSICA, "2"), None)
        assert isinstance(refused.value, StoreUnavailable)
        with pytest.raises(SchemaTooNew):
            newer.items()
    finally:
        newer.close()
    assert rows(url, "votes")[0]["verdict"] == BRYCE


def test_a_stopped_postgresql_costs_the_press_and_the_store_recovers(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    store = FeedbackStore(url, KEY)
    try:
        store.record(vote("f:1", BRYCE, "1"), sample())
        postgres.stop()
        try:
            with pytest.raises(StoreUnavailable) as down:
                store.record(vote("f:1", JESSICA, "2"), None)
            assert postgres.password not in str(down.value)
            assert "127.0.0.1" in str(down.value)
            assert down.value.__cause__ is not None
        finally:
            postgres.start()
        assert store.record(vote("f:1", JESSICA, "2"), None) == {BRYCE: 1, JESSICA: 1}
    finally:
        store.close()


def test_an_unreachable_postgresql_is_unavailable_without_its_password_in_the_message() -> None:
    store = FeedbackStore(f"postgresql://bot:hunter2-secret@127.0.0.1:{free_port()}/feedback", KEY)
    try:
        with pytest.raises(StoreUnavailable) as down:
            store.has_face("f:1")
        assert "hunter2-secret" not in str(down.value)
        assert "postgresql+psycopg://bot:***@127.0.0.1" in str(down.value)
    finally:
        store.close()


def test_a_sqlite_file_in_a_place_it_cannot_be_written_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a file").write_text("not a folder")
    store = FeedbackStore(f"sqlite:///{tmp_path}/a file/feedback.sqlite3", KEY)
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            store.record(vote("f:1", BRYCE, "1"), sample())
    finally:
        store.close()


def test_feedback_key_is_used_when_set_and_required_for_postgresql() -> None:
    secret = "a shared secret for all replicas"
    assert feedback_key(secret, "postgresql://bot@db/feedback") == secret.encode()
    assert feedback_key(secret, "sqlite:///nowhere/feedback.sqlite3") == secret.encode()
    for url in ("postgresql://bot@db/feedback", "postgres://bot@db/feedback", "postgresql+psycopg://bot@db/f"):
        with pytest.raises(ValueError, match="FEEDBACK_KEY"):
            feedback_key(None, url)
    with pytest.raises(ValueError, match="at least 16"):
        feedback_key("short", "postgresql://bot@db/feedback")


def test_sqlite_keeps_its_key_beside_the_database_made_once_and_private(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/data/feedback.sqlite3"
    key = feedback_key(None, url)
    path = tmp_path / "data" / "feedback.sqlite3.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(key) >= 32
    assert feedback_key(None, url) == key
    assert feedback_key("", url) == key  # FEEDBACK_KEY= (empty) in .env means unset
    assert feedback_key(None, f"sqlite:///{tmp_path}/other.sqlite3") != key

    # A restarted bot finds the faces again: the same key hashes the same face keys.
    first = FeedbackStore(url, key)
    first.record(vote("telegram:5:6:1", BRYCE, "5"), sample())
    first.close()
    again = FeedbackStore(url, feedback_key(None, url))
    try:
        assert again.has_face("telegram:5:6:1")
        assert again.forget("telegram", "5") == 1
    finally:
        again.close()
    # Nothing else beside them: no temporary file of the key's writing is left behind.
    assert sorted(os.listdir(tmp_path / "data")) == ["feedback.sqlite3", "feedback.sqlite3.key"]


def test_a_replica_keeping_the_same_face_first_does_not_cost_this_press(store: FeedbackStore, url: str) -> None:
    """Another replica inserts the face between this press's look-up and its insert: the press is retried."""
    replica = FeedbackStore(url, KEY)
    raced: list[dict[str, int]] = []

    def other_replica_first(conn, clauseelement, *args) -> None:
        if not raced and isinstance(clauseelement, sa.Insert) and clauseelement.table.name == "faces":
            raced.append(replica.record(vote("f:raced", JESSICA, "2"), sample(chip=b"the replica's")))

    sa.event.listen(store._engine, "before_execute", other_replica_first)
    try:
        assert store.record(vote("f:raced", BRYCE, "1"), sample(chip=b"mine")) == {BRYCE: 1, JESSICA: 1}
    finally:
        sa.event.remove(store._engine, "before_execute", other_replica_first)
        replica.close()
    assert raced == [{JESSICA: 1}]
    (item,) = store.items()
    assert store.chip(item.id) == b"the replica's"
