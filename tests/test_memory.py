"""workloads.memory: batches reuse freed memory instead of faulting fresh pages in, in a thread as under
Ray Train, and Ray's workers start with the settings. Counted in page faults, not timed."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from workloads import memory
from workloads.data.synth import SynthConfig, generate

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or memory._glibc_mallopt() is None,
                                 reason="glibc's allocator on Linux")

# Reads every video of the shards in a thread, a warm-up pass then five measured ones, with transparent
# huge pages off for the process (as on a kernel that offers none, so each fault is one base page), and
# prints the fresh bytes faulted in per byte of frames decoded in the median pass: the steady state. Now
# and then one pass grows the heap once, by a batch or two, whatever the settings (a freed block the next
# batch does not fit); over three passes summed, that alone took the kept settings from 0.04 to 0.5-0.9.
DECODE = textwrap.dedent("""
    import ctypes, json, resource, statistics, sys, threading
    ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
    from workloads.data.reader import VideoShards
    dataset = VideoShards(sys.argv[1], batch_size=32)
    out = {}
    def work():
        for _ in dataset:
            pass
        passes = []
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            decoded = sum(int(batch.mask.sum()) * 1152 for batch in dataset)
            passes.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) * resource.getpagesize() / decoded)
        out["fresh_per_byte"] = statistics.median(passes)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    # 32 videos of 300 frames make a 44 MB float batch: above glibc's largest mmap threshold (32 MB)
    out = tmp_path_factory.mktemp("long")
    generate(str(out), 96, seed=0, config=SynthConfig(min_frames=300, max_frames=300))
    return str(out)


def fresh_per_byte(shards: str, env: dict[str, str]) -> float:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != memory.OPT_OUT}
    done = subprocess.run([sys.executable, "-c", DECODE, shards], env={**clean, **env}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])["fresh_per_byte"]


@linux_glibc
def test_batches_decoded_in_a_thread_reuse_memory_instead_of_faulting_it_in(long_videos):
    defaults = fresh_per_byte(long_videos, {memory.OPT_OUT: "0"})
    kept = fresh_per_byte(long_videos, {name: str(value) for name, value in memory.DEFAULTS.items()})
    # glibc's defaults map every float batch afresh: about 4 bytes of new memory per byte of frames
    assert defaults > 2, defaults
    assert kept < 0.5, kept


def test_a_users_own_malloc_setting_wins_and_the_opt_out_sets_nothing(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", memory.OPT_OUT):
        monkeypatch.delenv(name, raising=False)
    assert memory.allocator_env() == {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "2147483647",
                                      "MALLOC_ARENA_MAX": "1"}
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert "MALLOC_ARENA_MAX" not in memory.allocator_env() and len(memory.allocator_env()) == 2
    monkeypatch.setenv(memory.OPT_OUT, "0")
    assert memory.allocator_env() == {}
    assert memory.keep_freed_memory() == {}


def test_the_huge_page_mode_is_read_from_the_kernel():
    assert memory.huge_page_mode() in {"always", "madvise", "never", "unknown"}
    assert "transparent huge pages" in memory.describe()
