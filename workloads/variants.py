"""How a model learns, by name: the classifier's LCE, the paper's serial variants (a)-(e) and its parallel
ones, each a sequence of `Stage`s of weighted losses. With `workloads.losses`' registry, this is the one
place that knows loss names: the training loops, presets and search spaces all go through `stages`.

    variant        stages (the losses each sums)            paper
    ce             train: ce                                teacher / skyline, k-frame baselines
    rep_then_ce    rep: rep, then finetune: ce              serial (a): Lrep, then fine-tune on LCE
    rep+ce         train: rep + ce                          serial (b), parallel
    pred           train: pred                              serial (c)
    pred+ce        train: pred + ce                         serial (d)
    rep+pred+ce    train: rep + pred + ce                   serial (e), parallel
    rep            parallel: rep                            parallel

Intermediate matching adds `rep_intermediate` (Lrep on the states after each block) to the first stage
of a variant that learns the representation (Lrep).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from workloads.errors import WorkloadError
from workloads.losses import LOSSES, Objective


@dataclass(frozen=True)
class Stage:
    """Train with `objective` for `epochs` (None: the config's). Each stage starts a fresh Adam and
    learning-rate schedule, as the fine-tuning stage of variant (a) does."""

    objective: Objective
    epochs: int | None = None
    name: str = "train"


CLASSIFIER = "ce"  # the skyline, the baselines and a parallel pair's teacher learn from the labels alone
INTERMEDIATE = "rep_intermediate"
REPRESENTATION = "rep"  # a variant that has it can match intermediate states too
OUTPUT_LOSSES = ("ce", "pred")  # the losses on a model's predictions: the ones that train an output layer

# Variant (a) trains on one loss per stage, at weight 1 (with Adam a lone loss's weight barely matters).
_TWO_STAGES = {"rep_then_ce": (("rep", "rep"), ("finetune", "ce"))}


def _first_losses(variant: str) -> tuple[str, ...]:
    """The losses the first stage of `variant` sums."""
    if variant in _TWO_STAGES:
        return (_TWO_STAGES[variant][0][1],)
    return tuple(variant.split("+"))


def learns_representation(variant: str) -> bool:
    """Whether `variant` matches the teacher's representation (Lrep) at all: (a), (b), (e), the parallel ones."""
    return REPRESENTATION in _first_losses(variant)


SERIAL_VARIANTS = ("rep_then_ce", "rep+ce", "pred", "pred+ce", "rep+pred+ce")
PARALLEL_VARIANTS = ("rep", "rep+ce", "rep+pred+ce")
VARIANTS = {"classifier": (CLASSIFIER,), "serial": SERIAL_VARIANTS, "parallel": PARALLEL_VARIANTS}  # by mode
INTERMEDIATE_VARIANTS = tuple(v for v in SERIAL_VARIANTS if learns_representation(v))
DEFAULT_WEIGHTS = {name: 1.0 for name in LOSSES}  # what a loss not given a weight gets


def stages(variant: str, weights: dict[str, float] | None = None, pred_distance: str = "kl",
           intermediate: bool = False, *, mode: str = "serial") -> tuple[Stage, ...]:
    """The stages of `variant` of `mode` (classifier, serial, parallel), its losses weighted by `weights`
    (1 for those not given), Lpred measured by `pred_distance`, and with `intermediate` Lrep on
    intermediate states added to its first stage."""
    known = VARIANTS.get(mode)
    if known is None:
        raise WorkloadError(f"unknown training mode {mode!r}; known: {', '.join(VARIANTS)}")
    if variant not in known:
        raise WorkloadError(f"unknown {mode} variant {variant!r}; known: {', '.join(known)}")
    weights = weights or {}
    if variant in _TWO_STAGES:
        result = tuple(Stage(Objective({loss: 1.0}), name=name) for name, loss in _TWO_STAGES[variant])
    else:
        result = (Stage(Objective.parse(variant, weights, pred_distance), name="parallel" if mode == "parallel" else "train"),)
    if intermediate:
        if not learns_representation(variant):
            raise WorkloadError(f"variant {variant!r} learns no representation (Lrep) to match intermediate states "
                                f"with; those that do: {', '.join(INTERMEDIATE_VARIANTS)}")
        first = result[0]
        matched = {**first.objective.weights, INTERMEDIATE: weights.get(INTERMEDIATE, 1.0)}
        result = (dataclasses.replace(first, objective=Objective(matched, pred_distance)), *result[1:])
    return result


def check_own_classifier(stages: tuple[Stage, ...]) -> None:
    """A parallel student with an output layer of its own must learn from LCE or Lpred in every stage."""
    for stage in stages:
        if not {name for name, weight in stage.objective.weights.items() if weight} & set(OUTPUT_LOSSES):
            raise WorkloadError(f"a parallel student's own output layer learns only from LCE or Lpred, and "
                                f"{stage.objective.name} has neither: give it the teacher's (shared)")


def classifier_stages() -> tuple[Stage, ...]:
    """LCE alone, in one stage: how a teacher, a skyline or a baseline learns."""
    return stages(CLASSIFIER, mode="classifier")
