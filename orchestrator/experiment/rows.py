"""A cell's row: the key of the report's table row it belongs to (the keys of
`orchestrator.report.published`), the row's label as the paper's tables name it ("Serial Lrep, then LCE"),
and a cell's display name, that label with its k, data share and seed: the one name a person reads, in the
terminal, the report and MLflow (tag `row`) alike. And Table 3's rows, which the timing job times."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.experiment.modes import Mode
from workloads.saliency import RULES
from workloads.variants import REGISTRY

if TYPE_CHECKING:
    from orchestrator.experiment.matrix import Cell
    from orchestrator.experiment.outcome import CellOutcome

SKYLINE = "skyline"  # the row key of the teacher's skyline


def row_key(cell: Cell | CellOutcome) -> str:
    """The key of the table row a cell belongs to (the keys of `published`): "skyline",
    "baseline:<selection>", "<mode>:<variant>" with "+intermediate", and "@own" (its own classifier) or
    "@<rule>" (frames chosen by content)."""
    if cell.mode is Mode.SKYLINE:
        return SKYLINE
    if cell.mode.named_by_selection:
        return f"{cell.mode}:{cell.selection}"
    key = f"{cell.mode}:{cell.variant}" + ("+intermediate" if cell.intermediate else "")
    if cell.mode is Mode.PARALLEL and cell.parallel_classifier == "own":
        return key + "@own"
    return key + (f"@{cell.selection}" if cell.selection in RULES else "")


def parts(key: str) -> tuple[Mode, str, bool, bool]:
    """(mode, selection or variant, intermediate, own classifier) of a row key."""
    mode, _, what = key.partition(":")
    what, _, at = what.partition("@")
    intermediate, what = what.endswith("+intermediate"), what.removesuffix("+intermediate")
    return Mode(mode), what, intermediate, at == "own"


def content_rule(key: str) -> str | None:
    """The content selection rule (`workloads.saliency`) of a serial student's row key, or None."""
    rule = key.partition("@")[2]
    return rule if rule in RULES else None


def row_label(key: str) -> str:
    if key == SKYLINE:
        return "Teacher-Skyline (all frames)"
    mode, what, intermediate, own = parts(key)
    if mode.named_by_selection:
        return "-".join(part.capitalize() for part in what.split("_")) + "-k"
    rule = content_rule(key)
    return (f"{mode.capitalize()} {REGISTRY[what].label}" + (" (intermediate)" if intermediate else "")
            + (" (own classifier)" if own else "") + (f", frames by content ({rule})" if rule else ""))


def display_name(cell: Cell | CellOutcome) -> str:
    """A cell's display name: its row's label, its k, its share of the data when not all, its seed
    ("Serial Lrep, then LCE, k=30, seed 1")."""
    share = f", {cell.data_fraction:.0%} of the data" if cell.data_fraction < 1 else ""
    k = "" if cell.k is None else f", k={cell.k}"
    return f"{row_label(row_key(cell))}{k}{share}, seed {cell.seed}"


def timed(ks: tuple[int, ...], content: tuple[tuple[int, str], ...] = ()) -> tuple[str, ...]:
    """Table 3's rows, what the timing job times of each family: its teacher ("all"), its student at each k
    ("k<k>") and each content student ("k<k>-<rule>": its scorer over every frame, its student over the k
    it picks)."""
    return ("all", *(f"k{k}" for k in ks), *(timed_content(k, rule) for k, rule in content))


def timed_content(k: int, rule: str) -> str:
    return f"k{k}-{rule}"  # MLflow's metric names hold no "@"


def timed_adaptive(k: int) -> str:
    """Table 3's row of the student at k best read adaptively, timed with its own weights."""
    return f"k{k}-adaptive"
