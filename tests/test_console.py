"""The grid's progress line: live on a terminal, plain lines elsewhere (what CI and `ray job logs` see)."""

from orchestrator.driver.console import Counts, GridProgress
from orchestrator.errors import say


def test_off_a_terminal_a_plain_line_comes_when_a_cell_ends_not_when_one_starts(capsys, monkeypatch):
    clock = iter([100.0, 100.0, 130.0, 160.0])
    monkeypatch.setattr("orchestrator.driver.console.time.monotonic", lambda: next(clock))
    progress = GridProgress(Counts(done=2, running=1, failed=0, total=8, teachers=1), live=False)
    progress.update(Counts(done=2, running=2, failed=0, total=8, teachers=1))  # a start: no line
    progress.update(Counts(done=3, running=1, failed=0, total=8, teachers=1, left_seconds=150.0))
    say("  done  a cell")
    progress.update(Counts(done=4, running=2, failed=1, total=8, teachers=0, queued=1, left_seconds=90.0))
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "progress: 2/8 cells done, 1 running, 0 failed, 1 teacher training; 0m00s elapsed, time left: ?",
        # The time left as the counts carry it (`orchestrator.driver.pace` learns it)
        "progress: 3/8 cells done, 1 running, 0 failed, 1 teacher training; 0m30s elapsed, about 2m30s left",
        "  done  a cell",
        "progress: 4/8 cells done, 2 running, 1 queued, 1 failed, 0 teachers training; 1m00s elapsed, "
        "about 1m30s left",
    ]


def test_on_a_terminal_one_line_is_redrawn_below_what_the_grid_prints(capsys):
    progress = GridProgress(Counts(done=0, running=1, failed=0, total=4, teachers=1), live=True)
    progress.update(Counts(done=1, running=1, failed=0, total=4, teachers=0))
    say("  done  a cell")
    progress.close()
    captured = capsys.readouterr()
    assert captured.out == "  done  a cell\n"  # printed above the line, not into it
    assert "1/4 cells done, 1 running, 0 failed, 0 teachers training" in captured.err
    assert "progress:" not in captured.err + captured.out


def test_the_time_left_is_learned_kind_by_kind():
    """A parallel pair costs several baselines: after one of each, the cells left are priced by their kind,
    a kind not seen yet by the frames it reads, and all at the pace the work done so far took."""
    import time

    import pytest

    from orchestrator.driver.pace import Pace, frames_read
    from orchestrator.experiment.matrix import expand
    from orchestrator.experiment.presets import load_preset

    _, cells = expand(load_preset("tiny"), "syn-test")
    baseline, other_baseline = [c for c in cells if c.mode == "baseline"]
    parallel = next(c for c in cells if c.mode == "parallel")
    serial = next(c for c in cells if c.mode == "serial" and not c.intermediate)
    pace = Pace()
    assert pace.left([baseline]) is None  # nothing finished yet: no guess
    pace.finished(baseline, 10.0)
    pace.finished(parallel, 40.0)
    assert pace.estimate(other_baseline) == 10.0 and pace.estimate(parallel) == 40.0
    assert frames_read(parallel) == 7 * frames_read(baseline)  # k=10 of 60 frames, and its teacher's 60
    chooser = next(c for c in cells if c.chooses_by_content)  # its 10, and the 60 its scorer reads first
    assert frames_read(chooser) == 7 * frames_read(baseline)
    assert pace.estimate(serial) == pytest.approx(50.0 / (frames_read(baseline) + frames_read(parallel)) * 10)
    pace.began = time.monotonic() - 25.0  # two cells side by side: 50 s of work in 25 s
    assert pace.left([other_baseline, parallel]) == pytest.approx(25.0, rel=0.01)
    line = GridProgress(Counts(done=2, running=0, failed=0, total=4, teachers=0, left_seconds=25.0), live=False)
    assert "about 0m25s left" in line.line(Counts(done=2, running=0, failed=0, total=4, teachers=0, left_seconds=25.0))
