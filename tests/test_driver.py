"""The steps every driver shares: how it ends (one line, one exit status), SIGTERM, a failing store."""

import os
import signal
import time

import pytest

from orchestrator.driver.session import exit_status, stop_on_sigterm, store_failures
from orchestrator.errors import OrchestratorError
from orchestrator.store.layout import Store
from workloads.errors import DataError


def raising(error):
    def work():
        raise error

    return work


def test_how_a_driver_ended_is_one_line_and_an_exit_status(capsys):
    assert exit_status(lambda: 0, "kept") == 0 and exit_status(lambda: 1, "kept") == 1
    assert exit_status(raising(OrchestratorError("preset.yaml: ks: k=500 is outside [1, 60]")), "kept") == 2
    assert capsys.readouterr().err == "error: preset.yaml: ks: k=500 is outside [1, 60]\n"
    assert exit_status(raising(DataError("shard.parquet: row group 0: bad")), "kept") == 2
    assert capsys.readouterr().err == "error: shard.parquet: row group 0: bad\n"
    assert exit_status(raising(KeyboardInterrupt()), "finished cells are kept") == 130
    assert capsys.readouterr().err == "interrupted: finished cells are kept\n"
    with pytest.raises(ZeroDivisionError):  # a bug is no bad input: its traceback shows
        exit_status(raising(ZeroDivisionError()), "kept")


def interrupted_by_sigterm() -> bool:
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        return True
    return False


def test_sigterm_stops_a_driver_as_ctrl_c_does():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        stop_on_sigterm()
        assert interrupted_by_sigterm()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job a shell started in the background
        assert interrupted_by_sigterm()
        seen = []
        signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))  # Ray Tune's, during a search
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


def test_a_failing_store_is_one_line_naming_it(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(OrchestratorError, match=f"^{tmp_path}: the disk is full$"):
        with store_failures(store):
            raise OSError("the disk is full")
    with pytest.raises(ValueError):  # not the store's: left as it is
        with store_failures(store):
            raise ValueError("a bug")
