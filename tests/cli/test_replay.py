"""``rxstore replay FILE``: a session recorded against a real gateway becomes a pytest test that passes,
and fails, naming the first differing state, once the reducer is broken; mistakes are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rxstore import RootStore
from rxstore.gateway.demo import Post, save_post
from tests.cli.commands import assert_one_line_error, rxstore
from tests.client.recorder.stores import LikeStore, PostStore
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
BROKEN = '''
import pytest

from tests.client.recorder.stores import LikeStore, Likes


@pytest.fixture(autouse=True)
def broken_reducer(monkeypatch):
    """A reducer that counts one like too many from the second on."""
    def reduce(self, state, event):
        return Likes(state.count + 1 + (state.count > 0), event.data["from"])

    monkeypatch.setattr(LikeStore, "reduce", reduce)
'''


def pytest_run(test: Path) -> subprocess.CompletedProcess[str]:
    """``pytest TEST`` in a process of its own, in the test's folder, the app (this repository) importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(test.parent),
        test.name,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=test.parent)


async def test_a_session_recorded_on_a_real_gateway_replays_as_a_test_that_fails_on_a_broken_reducer(
    tmp_path: Path,
) -> None:
    """Record a real session (a snapshot, changes, likes from another client) -> rxstore replay ->
    pytest passes; a patched reducer -> it fails, naming the store, the state and the field."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        await save_post(gateway.log, Post(id="p0", title="before"))
        likes, posts = LikeStore(), PostStore()
        root = RootStore(gateway.url, stores=[likes, posts], token=AUTH.issue("ann"))
        with root.record() as recorder:
            async with root, RootStore(gateway.url, topics=["posts"], token=AUTH.issue("bob")) as bob:
                await root.live()
                for i in range(1, 6):
                    await save_post(gateway.log, Post(id=f"p{i}", title=str(i)))
                    await bob.broadcast("posts", "post_liked", {"post": f"p{i}"})
                await wait_for(
                    lambda: len(posts.value) == 6 and likes.value.count == 5, what="6 posts, 5 likes"
                )
        recorder.save(tmp_path / "session.jsonl")
    finally:
        await gateway.stop()
    recording = recorder.recording
    assert recording.frames[0].name == "rxstore:snapshot" and len(recording.states("LikeStore")) == 6

    made = rxstore("replay", "session.jsonl", "-o", "test_session.py", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"rxstore: wrote test_session.py: {len(recording.frames)} frames and ")
    passed = pytest_run(tmp_path / "test_session.py")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "1 passed" in passed.stdout

    (tmp_path / "conftest.py").write_text(BROKEN)
    failed = pytest_run(tmp_path / "test_session.py")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "ReplayMismatch: LikeStore 'LikeStore': state 2 (after frame " in failed.stdout
    assert "differs from the recording: state.count: recorded 2, replayed 3" in failed.stdout


def test_the_test_file_is_named_after_the_recording_and_not_overwritten(tmp_path: Path) -> None:
    """Without -o: test_replay_<name>.py here; again: refused unless --force."""
    from tests.testing.test_replay import session

    session().save(tmp_path / "my session.jsonl")
    assert rxstore("replay", "my session.jsonl", cwd=tmp_path).returncode == 0
    assert (tmp_path / "test_replay_my_session.py").is_file()
    again = rxstore("replay", "my session.jsonl", cwd=tmp_path)
    assert_one_line_error(
        again, "test_replay_my_session.py exists: name another with -o, or overwrite it with --force"
    )
    assert rxstore("replay", "my session.jsonl", "--force", cwd=tmp_path).returncode == 0
    assert pytest_run(tmp_path / "test_replay_my_session.py").returncode == 0


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    """No file, not a recording, another version, a class a test cannot import, a typo of the command."""
    assert_one_line_error(rxstore("replay", "nope.jsonl", cwd=tmp_path), "no recording file nope.jsonl")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_one_line_error(rxstore("replay", "notes.txt", cwd=tmp_path), "notes.txt: line 1 is not JSON")
    (tmp_path / "v9.jsonl").write_text('{"rxstore": "recording", "version": 9}\n')
    assert_one_line_error(
        rxstore("replay", "v9.jsonl", cwd=tmp_path), "recording format 9; this rxstore reads 1"
    )
    header = '{"rxstore": "recording", "version": 1, "stores": [{"name": "S", "class": "__main__:S"}]}\n'
    (tmp_path / "main.jsonl").write_text(header)
    assert_one_line_error(
        rxstore("replay", "main.jsonl", cwd=tmp_path),
        "store 'S' is of class S defined in __main__: a test cannot",
    )
    assert_one_line_error(rxstore("repaly", "main.jsonl", cwd=tmp_path), "did you mean replay?")
    assert "turn a recording" in rxstore("--help", cwd=tmp_path).stdout
