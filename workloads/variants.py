"""How a model learns, by name: the classifier's LCE, the paper's serial variants (a)-(e) and its parallel
ones, each a registered `Variant` whose stages sum weighted losses. With `workloads.losses`' registry, this
is the one place that knows loss names: the training loops, presets and search spaces all go through it.

    variant        stages (the losses each sums)            paper
    ce             train: ce                                teacher / skyline, k-frame baselines
    rep_then_ce    rep: rep, then finetune: ce              serial (a): Lrep, then fine-tune on LCE
    rep            parallel: rep                            parallel
    rep+ce         train: rep + ce                          serial (b), parallel
    pred           train: pred                              serial (c)
    pred+ce        train: pred + ce                         serial (d)
    rep+pred+ce    train: rep + pred + ce                   serial (e), parallel

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
# How a variant of several stages spends the epochs it is given: shared out among its stages, so it trains
# as long as a one-stage model (`split`), or each stage all of them (`each`).
STAGE_EPOCHS = ("split", "each")
TRAININGS = ("classifier", "serial", "parallel")  # the ways a model trains, each with its own variants
LOSS_LABELS = {"ce": "LCE", "rep": "Lrep", "pred": "Lpred", INTERMEDIATE: "Lrep on intermediate states"}


@dataclass(frozen=True)
class Variant:
    """A way to learn: its name (`+` joins the losses of its one stage), the trainings that use it, and
    for a variant of several stages each stage's name and its one loss (at weight 1: with Adam a lone
    loss's weight barely matters)."""

    name: str
    trainings: tuple[str, ...]
    stepwise: tuple[tuple[str, str], ...] = ()  # (stage name, loss) per stage; () for one stage

    @property
    def first_losses(self) -> tuple[str, ...]:
        """The losses its first stage sums."""
        return (self.stepwise[0][1],) if self.stepwise else tuple(self.name.split("+"))

    @property
    def stage_count(self) -> int:
        return len(self.stepwise) or 1

    @property
    def learns_representation(self) -> bool:
        """Whether it matches the teacher's representation (Lrep) at all: (a), (b), (e), the parallel ones."""
        return REPRESENTATION in self.first_losses

    @property
    def label(self) -> str:
        """The paper's words: each stage's losses joined by " + ", stages by ", then "."""
        steps = [(loss,) for _, loss in self.stepwise] or [tuple(self.name.split("+"))]
        return ", then ".join(" + ".join(LOSS_LABELS.get(loss, loss) for loss in losses) for losses in steps)

    def stages(self, weights: dict[str, float], pred_distance: str, training: str) -> tuple[Stage, ...]:
        if self.stepwise:
            return tuple(Stage(Objective({loss: 1.0}), name=name) for name, loss in self.stepwise)
        name = "parallel" if training == "parallel" else "train"
        return (Stage(Objective.parse(self.name, weights, pred_distance), name=name),)


# In the order tables list them: the paper's (a)-(e) among the serial ones, Lrep alone first in parallel.
_REGISTERED = (
    Variant(CLASSIFIER, ("classifier",)),
    Variant("rep_then_ce", ("serial",), stepwise=(("rep", "rep"), ("finetune", "ce"))),
    Variant("rep", ("parallel",)),
    Variant("rep+ce", ("serial", "parallel")),
    Variant("pred", ("serial",)),
    Variant("pred+ce", ("serial",)),
    Variant("rep+pred+ce", ("serial", "parallel")),
)
REGISTRY: dict[str, Variant] = {variant.name: variant for variant in _REGISTERED}
VARIANTS = {training: tuple(v.name for v in _REGISTERED if training in v.trainings) for training in TRAININGS}
SERIAL_VARIANTS = VARIANTS["serial"]
PARALLEL_VARIANTS = VARIANTS["parallel"]
INTERMEDIATE_VARIANTS = tuple(v for v in SERIAL_VARIANTS if REGISTRY[v].learns_representation)
DEFAULT_WEIGHTS = {name: 1.0 for name in LOSSES}  # what a loss not given a weight gets


def find_variant(name: str, training: str = "serial") -> Variant:
    """The registered variant `name` of `training` (classifier, serial, parallel); an error naming the
    ones there are when it is not one."""
    known = VARIANTS.get(training)
    if known is None:
        raise WorkloadError(f"unknown training mode {training!r}; known: {', '.join(VARIANTS)}")
    if name not in known:
        raise WorkloadError(f"unknown {training} variant {name!r}; known: {', '.join(known)}")
    return REGISTRY[name]


def learns_representation(variant: str) -> bool:
    """Whether the variant named `variant` matches the teacher's representation (Lrep) at all."""
    return REGISTRY[variant].learns_representation


def stages(variant: str, weights: dict[str, float] | None = None, pred_distance: str = "kl",
           intermediate: bool = False, *, mode: str = "serial", epochs: int | None = None,
           stage_epochs: str = "each") -> tuple[Stage, ...]:
    """The stages of `variant` of `mode` (classifier, serial, parallel), its losses weighted by `weights`
    (1 for those not given), Lpred measured by `pred_distance`, and with `intermediate` Lrep on
    intermediate states added to its first stage. With `stage_epochs` "split", `epochs` are shared out
    among the stages (the earlier ones take what does not divide); "each" leaves every stage the config's."""
    found = find_variant(variant, mode)
    weights = weights or {}
    result = found.stages(weights, pred_distance, mode)
    if stage_epochs not in STAGE_EPOCHS:
        raise WorkloadError(f"stage_epochs is one of {', '.join(STAGE_EPOCHS)}, got {stage_epochs!r}")
    if stage_epochs == "split" and len(result) > 1:
        if epochs is None or epochs < len(result):
            raise WorkloadError(f"variant {variant!r} has {len(result)} stages to share {epochs} epochs among: "
                                f"give it at least {len(result)}, or stage_epochs: each")
        shares = [epochs // len(result) + (i < epochs % len(result)) for i in range(len(result))]
        result = tuple(dataclasses.replace(stage, epochs=share) for stage, share in zip(result, shares))
    if intermediate:
        if not found.learns_representation:
            raise WorkloadError(f"variant {variant!r} learns no representation (Lrep) to match intermediate states "
                                f"with; those that do: {', '.join(INTERMEDIATE_VARIANTS)}")
        first = result[0]
        matched = {**first.objective.weights, INTERMEDIATE: weights.get(INTERMEDIATE, 1.0)}
        result = (dataclasses.replace(first, objective=Objective(matched, pred_distance)), *result[1:])
    return result


def epochs_trained(epochs: int, variant: str, stage_epochs: str = "each") -> int:
    """The epochs a model of `variant` trains, given `epochs` and how its stages spend them."""
    return epochs if stage_epochs == "split" else epochs * REGISTRY[variant].stage_count


def check_own_classifier(stages: tuple[Stage, ...]) -> None:
    """A parallel student with an output layer of its own must learn from LCE or Lpred in every stage."""
    for stage in stages:
        if not stage.objective.trains_output:
            raise WorkloadError(f"a parallel student's own output layer learns only from LCE or Lpred, and "
                                f"{stage.objective.name} has neither: give it the teacher's (shared)")


def classifier_stages() -> tuple[Stage, ...]:
    """LCE alone, in one stage: how a teacher, a skyline or a baseline learns."""
    return stages(CLASSIFIER, mode="classifier")
