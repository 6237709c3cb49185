"""From a search space to a checked model: each trial's task (its own schedule length) and the
challenge's rules applied before anything trains."""

from __future__ import annotations

import dataclasses

import keras_tuner as kt

from sweep import backend, ranking, spaces
from sweep.data import CLASS_NAMES, IMAGE_SHAPE
from sweep.engine import normalization, rules
from sweep.errors import SweepError
from sweep.settings import SearchSettings
from sweep.spaces import Space, TrainingTask

RULE_CHECK_POINTS = 4  # random points of a space checked (with its default) before a search


class SpaceHyperModel(kt.HyperModel):
    def __init__(self, space: Space, task: TrainingTask, precision: str):
        super().__init__(name=space.name)
        self.space = space
        self.task = task
        self.precision = precision

    def build(self, hp):
        """Build and check the model: a trial whose model breaks a rule fails before training.
        Its learning-rate schedule spans the trial's own epochs (`ranking.trial_epochs`), and
        its layers compute in the search's precision (dropout in float32: `drop_in_float32`;
        batch normalisation by a fused kernel once the rules have passed it: `normalization`)."""
        with backend.building_in(self.precision):
            model = self.space.build(hp, trial_task(self.task, hp.values))
        backend.drop_in_float32(model)
        try:
            rules.check_model(model)
        except rules.RuleViolation as e:
            raise kt.errors.FailedTrialError(f"search space {self.space.name}: {e}") from None
        normalization.fuse(model)
        return model

    def count_params(self, hp) -> int:
        """Parameters of the model `hp` builds, without training or checking it: what
        --max-params limits (a model that cannot be built counts as 0 and fails as a trial)."""
        try:
            return int(self.space.build(hp, trial_task(self.task, hp.values)).count_params())
        except Exception:  # noqa: BLE001 - the trial will fail with the reason
            return 0


def training_task(settings: SearchSettings) -> TrainingTask:
    return TrainingTask(
        input_shape=IMAGE_SHAPE,
        num_classes=len(CLASS_NAMES),
        train_size=settings.train_size,
        epochs=settings.max_epochs,
    )


def trial_task(task: TrainingTask, values: dict) -> TrainingTask:
    """The task of one trial: a screening trial's schedule ends with its own, shorter epochs."""
    return dataclasses.replace(task, epochs=ranking.trial_epochs(values, task.epochs))


def check_space(space: Space, settings: SearchSettings) -> None:
    """Build the space's default and a few random points and check each against the rules,
    so a space that breaks them stops the search before any training."""
    try:
        points = spaces.sample_points(
            space, training_task(settings), RULE_CHECK_POINTS, settings.seed
        )
    except Exception as e:  # noqa: BLE001 - a user's space may raise anything
        raise SweepError(
            f"Search space {space.name!r} failed to build a model: {type(e).__name__}: {e}"
        ) from None
    for _, model in points:
        try:
            rules.check_model(model)
        except rules.RuleViolation as e:
            raise SweepError(f"Search space {space.name!r}: {e}") from None
    registry = points[0][0]  # every hyperparameter these builds registered
    for point in settings.known_points:
        check_known_point(space, settings, point, registry)


def check_known_point(space: Space, settings: SearchSettings, point: dict,
                      registered: kt.HyperParameters) -> None:
    """A `--try` point names hyperparameters the space has at that point, each with a value it
    allows, and its model keeps the rules. Values of unconditional hyperparameters (among those
    the space's builds `registered`) are checked before the point is built, so an absurd one
    (40 blocks) gets the space's range, not the error of a model that cannot be built."""
    # Early only where a name has one meaning: a conditional one may have another range
    # under the conditions the point itself sets.
    names = [entry.name for entry in registered.space]
    check_values(space, point, {entry.name: entry for entry in registered.space
                                if not entry.conditions and names.count(entry.name) == 1})
    try:
        hps, model = build_point(space, training_task(settings), point)
    except Exception as e:  # noqa: BLE001 - a user's space may raise anything
        raise SweepError(f"--try {format_point(point)}: search space {space.name!r} failed to "
                         f"build it: {type(e).__name__}: {e}") from None
    entries = active_entries(hps)
    for name, value in point.items():
        if name not in entries:
            raise SweepError(f"--try {name}={value}: search space {space.name!r} has no "
                             f"hyperparameter {name!r} at this point; it has "
                             f"{', '.join(entries)}.")
    check_values(space, point, entries)
    try:
        rules.check_model(model)
    except rules.RuleViolation as e:
        raise SweepError(f"--try {format_point(point)}: {e}") from None


def check_values(space: Space, point: dict, entries: dict) -> None:
    """Each of `point`'s values that `entries` (hyperparameters by name) knows is allowed."""
    for name, value in point.items():
        if name in entries and not spaces.allows(entries[name], value):
            raise SweepError(f"--try {name}={value} is outside search space {space.name!r}: "
                             f"{spaces.describe_entry(entries[name])}.")


def build_point(space: Space, task: TrainingTask, point: dict):
    """The hyperparameters and model of `point`: its values, and every other hyperparameter a
    build registers at its default. The values are set before the build, which keeps them, so
    the conditional hyperparameters they make active (SGD's own rate) are registered too."""
    hps = kt.HyperParameters()
    hps.values.update(point)
    return hps, space.build(hps, task)


def active_entries(hps: kt.HyperParameters) -> dict:
    """The hyperparameters active at `hps`'s values, by name."""
    return {entry.name: entry for entry in hps.space if hps.is_active(entry)}


def format_point(point: dict) -> str:
    return ",".join(f"{name}={value}" for name, value in point.items())
