"""The review store: the latest answer wins, undo is an event, works are matched by sha256,
a newer or foreign file is refused untouched, concurrent writers lose nothing and a killed
writer loses at most the event in flight."""

from __future__ import annotations

import hashlib
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from artylyze.review import ReviewError, ReviewStore, review_path
from artylyze.review.sqlite import APPLICATION_ID, SCHEMA_VERSION


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def answer(store: ReviewStore, work: str, action: str, label: str | None = None,
           task: str = "style", reviewer: str = "ann", path: str | None = None):
    return store.add(sha256=sha(work), path=path or f"{work}.jpg", task=task, action=action,
                     label=label, reviewer=reviewer, machine_label="Cubism", machine_score=0.4,
                     model="m1")


@pytest.fixture()
def store(tmp_path: Path) -> ReviewStore:
    with ReviewStore.open(tmp_path / "r.sqlite") as s:
        yield s


def test_latest_answer_wins_and_keeps_what_the_machine_said(store: ReviewStore) -> None:
    answer(store, "a", "confirm", "Cubism")
    answer(store, "a", "correct", "Fauvism", reviewer="bob")
    answer(store, "b", "confirm", "Cubism")
    now = store.current()
    assert now[(sha("a"), "style")].label == "Fauvism"
    assert now[(sha("a"), "style")].reviewer == "bob"
    assert now[(sha("a"), "style")].machine_label == "Cubism"
    assert now[(sha("a"), "style")].machine_score == pytest.approx(0.4)
    assert now[(sha("b"), "style")].action == "confirm"
    assert store.count() == 3  # the history is kept


def test_undo_is_an_event_that_takes_back_the_latest_answer(store: ReviewStore) -> None:
    first = answer(store, "a", "confirm", "Cubism")
    answer(store, "a", "correct", "Fauvism")
    undo = answer(store, "a", "undo")
    assert undo.undoes == first.id + 1
    assert store.current()[(sha("a"), "style")].label == "Cubism"
    answer(store, "a", "undo")
    assert store.current() == {}
    with pytest.raises(ReviewError, match="nothing to undo"):
        answer(store, "a", "undo")
    assert [e.action for e in store.events()] == ["confirm", "correct", "undo", "undo"]


def test_reject_leaves_no_label_and_tasks_are_separate(store: ReviewStore) -> None:
    answer(store, "a", "reject")
    answer(store, "a", "set", "print", task="object_type")
    now = store.current()
    assert now[(sha("a"), "style")].label is None
    assert now[(sha("a"), "style")].action == "reject"
    assert set(store.current("object_type")) == {(sha("a"), "object_type")}
    assert store.tasks() == ["object_type", "style"]


def test_a_renamed_file_keeps_its_review(store: ReviewStore) -> None:
    answer(store, "a", "correct", "Fauvism", path="old/name.jpg")
    # the same bytes under another path: the key is the sha256, the path is for people
    assert store.current()[(sha("a"), "style")].path == "old/name.jpg"
    answer(store, "a", "confirm", "Fauvism", path="new/other.jpg")
    assert store.current()[(sha("a"), "style")].path == "new/other.jpg"
    assert len(store.current()) == 1


@pytest.mark.parametrize("bad, match", [
    ({"reviewer": "  "}, "name must not be empty"),
    ({"action": "approve"}, "action must be one of"),
    ({"sha256": "abc"}, "sha256 must be"),
    ({"label": None}, "label is required"),
    ({"action": "reject", "label": "Cubism"}, "takes no label"),
    ({"label": "x" * 501}, "longer than"),
])
def test_bad_events_are_refused_and_nothing_is_written(store: ReviewStore, bad: dict,
                                                       match: str) -> None:
    event = {"sha256": sha("a"), "path": "a.jpg", "task": "style", "action": "correct",
             "label": "Cubism", "reviewer": "ann", **bad}
    with pytest.raises(ReviewError, match=match):
        store.add_many([{"sha256": sha("b"), "path": "b.jpg", "task": "style",
                         "action": "confirm", "label": "Cubism", "reviewer": "ann"}, event])
    assert store.count() == 0


def test_the_file_says_what_it_is(tmp_path: Path) -> None:
    ReviewStore.open(tmp_path / "r.sqlite").close()
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()
    assert review_path(tmp_path / "meta.parquet") == tmp_path / "meta.parquet.review.sqlite"
    assert review_path(tmp_path / "meta") == tmp_path / "meta.review.sqlite"
    with pytest.raises(ReviewError, match="no review store"):
        ReviewStore.open(tmp_path / "none.sqlite", create=False)
    assert not (tmp_path / "none.sqlite").exists()


def _newer(path: Path) -> None:
    ReviewStore.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"path,task,label\na.jpg,style,Cubism\n" * 100)


@pytest.mark.parametrize("make, match", [(_newer, "newer ArtyLyze"),
                                         (_foreign, "not an ArtyLyze review store"),
                                         (_not_sqlite, "not an SQLite database")])
def test_newer_foreign_or_other_files_are_refused_untouched(tmp_path: Path, make,
                                                            match: str) -> None:
    path = tmp_path / "r.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ReviewError, match=match):
        ReviewStore.open(path)
    assert path.read_bytes() == before


# -- concurrency and faults ---------------------------------------------------------------

REVIEWERS, EVENTS = 8, 1000


def _post(path: Path, who: int, n: int) -> None:
    with ReviewStore.open(path) as s:
        for i in range(n):
            s.add(sha256=sha(f"{who}-{i}"), path=f"{who}/{i}.jpg", task="style",
                  action="correct", label=f"L{i}", reviewer=f"reviewer {who}")


def test_eight_reviewers_in_threads_lose_no_event(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    shared = ReviewStore.open(path)  # half share one store object, half open their own
    def run(who: int) -> None:
        if who % 2:
            for i in range(EVENTS // REVIEWERS):
                shared.add(sha256=sha(f"{who}-{i}"), path="x.jpg", task="style",
                           action="confirm", label="A", reviewer=f"r{who}")
        else:
            _post(path, who, EVENTS // REVIEWERS)
    threads = [threading.Thread(target=run, args=(w,)) for w in range(REVIEWERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.count() == EVENTS
    assert len(shared.current()) == EVENTS
    shared.close()


def test_eight_reviewers_in_processes_lose_no_event(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_post, args=(path, w, EVENTS // REVIEWERS))
             for w in range(REVIEWERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * REVIEWERS
    with ReviewStore.open(path, create=False) as s:
        assert s.count() == EVENTS
        assert len({e.id for e in s.events()}) == EVENTS
        assert {e.reviewer for e in s.events()} == {f"reviewer {w}" for w in range(REVIEWERS)}


WRITER = """
import hashlib, sys
from artylyze.review import ReviewStore
with ReviewStore.open(sys.argv[1]) as s:
    for i in range(100000):
        e = s.add(sha256=hashlib.sha256(str(i).encode()).hexdigest(), path=f"{i}.jpg",
                  task="style", action="confirm", label="A", reviewer="ann")
        print(e.id, flush=True)
"""


def test_kill_9_loses_at_most_the_event_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    committed = []
    for line in proc.stdout:  # each id is printed after its commit returned
        committed.append(int(line))
        if len(committed) >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed += [int(line) for line in proc.stdout.read().split()]
    with ReviewStore.open(path, create=False) as s:
        ids = [e.id for e in s.events()]
        assert set(committed) <= set(ids)
        assert len(ids) <= len(committed) + 1  # at most the one in flight, never half of it
        assert ids == list(range(1, len(ids) + 1))
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
