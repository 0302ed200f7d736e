"""`benchmarks/predict_speed.py` kept from rotting: on small models it times every row, and each adaptive row
reads what its schedule says (every video stopping after m frames, or the shares `--adaptive-stops` gives),
so its time is the time of that much reading; a schedule that is not one share per step is refused by name."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "predict_speed.py"), "--size", "small",
                           "--videos", "16", "--batch-size", "8", "--rounds", "1", "--families", "hrnn", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_each_adaptive_row_reads_what_its_schedule_says(tmp_path):
    done = run(tmp_path, "--adaptive-stops", "0.5,0,0,0.5")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {m.group(1): m.group(2).split() for m in re.finditer(
        r"^hrnn +(teacher|student|content|adaptive@\d+|adaptive mix) +(\d.*)$", done.stdout, re.M)}
    frames = {role: float(values[2]) for role, values in rows.items()}
    assert frames["teacher"] == 300 and frames["student"] == 30 and frames["content"] == 10
    assert [frames[f"adaptive@{m}"] for m in (12, 18, 24, 30)] == [12, 18, 24, 30]
    assert frames["adaptive mix"] == 21  # half of each batch of 8 stops at 12 frames, half reads all 30
    # Multiply-adds against the k=30 student's: each step reruns the student over the frames read so far,
    # so reading all 30 in five steps (6, 12, ..., 30: 90 frames' work) costs about three times reading them once.
    summary = next(line for line in done.stdout.splitlines() if line.startswith("hrnn read adaptively / student"))
    macs = {role: float(ratio) for role, ratio in re.findall(r"(adaptive(?:@\d+| mix)) [\d.]+x \([\d.]+ frames, "
                                                             r"multiply-adds ([\d.]+)x\)", summary)}
    assert [macs[f"adaptive@{m}"] for m in (12, 18, 24, 30)] == sorted(macs[f"adaptive@{m}"] for m in (12, 18, 24, 30))
    assert 2.5 < macs["adaptive@30"] < 3.5 and macs["adaptive@12"] < 1
    assert macs["adaptive mix"] == pytest.approx((macs["adaptive@12"] + macs["adaptive@30"]) / 2, abs=0.002)


def test_a_schedule_needs_one_share_per_step_summing_to_one(tmp_path):
    done = run(tmp_path, "--adaptive-stops", "0.5,0.5")
    assert done.returncode != 0
    assert "--adaptive-stops: 4 shares >= 0 summing to 1, one for each of the steps [12, 18, 24, 30]" in done.stderr
