"""The grid's progress line: live on a terminal, plain lines elsewhere (what CI and `ray job logs` see)."""

from orchestrator.driver.console import Counts, GridProgress
from orchestrator.errors import say


def test_off_a_terminal_a_plain_line_comes_when_a_cell_ends_not_when_one_starts(capsys, monkeypatch):
    clock = iter([100.0, 100.0, 130.0, 160.0])
    monkeypatch.setattr("orchestrator.driver.console.time.monotonic", lambda: next(clock))
    progress = GridProgress(Counts(done=2, running=1, failed=0, total=8, teachers=1), live=False)
    progress.update(Counts(done=2, running=2, failed=0, total=8, teachers=1))  # a start: no line
    progress.update(Counts(done=3, running=1, failed=0, total=8, teachers=1))
    say("  done  a cell")
    progress.update(Counts(done=4, running=2, failed=1, total=8, teachers=0, queued=1))
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "progress: 2/8 cells done, 1 running, 0 failed, 1 teacher training; 0m00s elapsed, time left: ?",
        # One cell in 30 s, five to go: the pace of this invocation's cells, not of those done before it.
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
