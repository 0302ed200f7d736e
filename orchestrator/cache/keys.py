"""Which caches a teacher writes, where they lie in the store, and whether they are complete.

A teacher's caches: `base` (E_T, P_T of every training video) and, for the Uniform-k students that match
its intermediate states, one per k and kind of points with I_T where that student has its intermediates
(after each of its frames but the last, or at its block ends).
"""

from __future__ import annotations

from orchestrator.cache.files import DamagedCache, read_manifest, set_aside
from orchestrator.experiment.matrix import TeacherSpec
from orchestrator.store.layout import Store


Matched = tuple[int, str]  # a Uniform-k student that matches intermediate states: (k, intermediate points)


def cache_key(spec: TeacherSpec, matched: Matched | None) -> str:
    """`base` (None), or the cache of I_T for the Uniform-k student: `intermediates-uniform-k<k>-frames`
    (after each of its frames), `intermediates-uniform-k<k>-l<l>` (at its block ends: l, that student's
    H-RNN block length, fixes where they lie)."""
    if matched is None:
        return "base"
    k, points = matched
    if points == "frames":
        return f"intermediates-uniform-k{k}-frames"
    return f"intermediates-uniform-k{k}-l{spec.model_spec.config().block_frames(k)}"


def cache_keys(spec: TeacherSpec, matched: tuple[Matched, ...]) -> dict[str, Matched | None]:
    """Every cache the teacher writes: key -> the student its intermediates are for (None: the base cache)."""
    return {cache_key(spec, wanted): wanted for wanted in (None, *matched)}


def cache_locations(store: Store, spec: TeacherSpec, matched: tuple[Matched, ...]) -> dict[str, str]:
    """Each cache the teacher writes: key -> its location in the store."""
    return {key: store.teacher_cache(spec.id, key) for key in cache_keys(spec, matched)}


def check_caches(caches: dict[str, str]) -> tuple[dict[str, str] | None, list[str]]:
    """(`caches`, key -> URI, when every one is complete, else None; what was found damaged). A damaged
    cache is set aside (its manifest renamed), so that the next fit writes it again."""
    damaged = []
    complete = True
    for key, location in caches.items():
        try:
            complete = read_manifest(location) is not None and complete
        except DamagedCache as error:
            set_aside(location)
            damaged.append(f"cache {key}: {error.problem}")
            complete = False
    return (caches if complete else None), damaged
