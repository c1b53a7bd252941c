"""FrameLog: the last frames, bounded; the oldest are dropped and every frame is counted."""

from __future__ import annotations

import pytest

from rxstore.devtools.frame_log import FrameLog


def test_the_log_keeps_the_last_limit_frames_newest_first_and_counts_all() -> None:
    log = FrameLog(limit=3)
    for seq in range(1, 6):
        log.frame("post_update", {"seq": seq, "op": "INSERT", "record": {"id": seq}})
        assert log.frame_done() is True  # the router's tap stays set
    assert len(log) == 3 and log.seen == 5
    assert [line.summary for line in log.lines()] == [f'INSERT seq {s} {{"id":{s}}}' for s in (5, 4, 3)]
    assert all(line.name == "post_update" and line.at > 0 for line in log.lines())


def test_a_log_keeps_at_least_one_frame() -> None:
    with pytest.raises(ValueError, match="at least 1 frame"):
        FrameLog(limit=0)
