"""KerasTuner subclasses that run `sweep.trial` under KerasTuner's oracles.

Importing this module loads TensorFlow; `sweep.search` imports it only after its quick checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine import trial as kt_trial

from search_spaces.blocks import TrainingTask
from sweep import rules, spaces, state
from sweep import trial as trial_module
from sweep.data import CLASS_NAMES, IMAGE_SHAPE, Split
from sweep.errors import SweepError, TimeBudgetReached
from sweep.search import SearchOutcome, SearchSettings, format_duration, report_command
from sweep.spaces import Space

RULE_CHECK_POINTS = 4  # random points of a space checked (with its default) before a search

state.install_atomic_json_writes()
# KerasTuner 1.4.8 ships with DEBUG on: every failed trial dumps its traceback on stderr. Our
# trial line gives the reason, the report too, and trial.json keeps the whole traceback.
kt_config.DEBUG = False
# Hyperband continues a trial from its parent's weights with a fresh optimizer (KerasTuner's
# design); Keras warns that it skips the checkpoint's optimizer variables each time.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

ENDED = ("COMPLETED", "FAILED", "INVALID")
# KerasTuner aborts after this many failed trials in a row; a space that always fails is a bug.
MAX_CONSECUTIVE_FAILURES = 3
HYPERBAND_ITERATIONS = 1000  # in effect unlimited: --max-trials ends a Hyperband search


def default_values(space: hp_module.HyperParameters) -> dict:
    """The default point of a space: each active hyperparameter at its default."""
    hps = hp_module.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.default
    return hps.values


class DefaultFirst:
    """Oracle mixin: the space's default point is the first trial of every search.

    KerasTuner starts with a random point; a space's default is the model its author measured,
    so trying it first gives every search a known-good baseline from its first trial on.
    """

    def _random_values(self):
        defaults = default_values(self.hyperparameters)
        if not self._duplicate(defaults):
            return defaults
        return super()._random_values()


class SafeOracle:
    """Oracle mixin: what KerasTuner's oracle lacks when processes die or trials keep failing.

    - A reloaded search never re-runs an ended trial. `end_trial` saves `oracle.json` before it
      drops the trial from `ongoing_trials`, and a reload requeues every ongoing trial
      (KERASTUNER_PITFALLS.md #13): a chief killed in between, or one restarted after the last
      trial, would train it again.
    - Too many failures in a row stop the search cleanly (#7). KerasTuner raises inside
      `end_trial` before saving the trial, and its `synchronized` lock is never released on an
      exception: a distributed chief would hang for good (keras-tuner#915). Here the trial is
      saved, the lock released, and every worker is told to stop.
    - A chief can hand a silent worker's trial to another one (`release_trial`) and, after a
      restart, let workers still training keep theirs (`keep_ongoing`).
    """

    stop_reason: str | None = None  # why the search stopped early, for the user
    exhausted = False  # KerasTuner answered STOPPED: the space or Hyperband's brackets ran out

    def reload(self):
        super().reload()
        self._retry_queue = [t for t in self._retry_queue if self.trials[t].status not in ENDED]

    @kt.synchronized
    def create_trial(self, tuner_id):
        if self.stop_reason:
            self.tuner_ids.discard(tuner_id)
            return kt_trial.Trial(self.get_space(), status="STOPPED")
        trial = super().create_trial(tuner_id)
        self.exhausted = self.exhausted or trial.status == "STOPPED"
        return trial

    @kt.synchronized
    def end_trial(self, trial):
        ongoing = {t.trial_id for t in self.ongoing_trials.values()}
        if trial.trial_id not in ongoing and self.trials[trial.trial_id].status in ENDED:
            return  # a worker repeating a call the chief answered before it restarted
        try:
            super().end_trial(trial)
        except RuntimeError as e:
            if "consecutive" not in str(e):
                raise
            ended = self.trials[trial.trial_id]
            self._save_trial(ended)
            self._drop_ongoing(trial.trial_id)
            self.save()
            self.stop_reason = (
                f"{MAX_CONSECUTIVE_FAILURES} trials failed in a row "
                f"(last: {state.failure_reason(ended.message)})"
            )

    def _drop_ongoing(self, trial_id: str) -> None:
        for tuner_id, ongoing in list(self.ongoing_trials.items()):
            if ongoing.trial_id == trial_id:
                del self.ongoing_trials[tuner_id]

    @kt.synchronized
    def release_trial(self, tuner_id: str) -> str | None:
        """Forget a worker; its trial, if any, goes back to the queue. Returns the trial id."""
        self.tuner_ids.discard(tuner_id)
        trial = self.ongoing_trials.pop(tuner_id, None)
        if trial is None:
            return None
        self._retry_queue.append(trial.trial_id)
        self.save()
        return trial.trial_id

    @kt.synchronized
    def keep_ongoing(self, ongoing: dict[str, str]) -> None:
        """After a chief restart, give the trials that were running back to their workers (a
        reload queued them): a worker still training finishes its trial; a dead one loses it
        after the timeout, like any silent worker."""
        for tuner_id, trial_id in ongoing.items():
            if trial_id in self._retry_queue:
                self._retry_queue.remove(trial_id)
                self.ongoing_trials[tuner_id] = self.trials[trial_id]
                self.tuner_ids.add(tuner_id)
        self.save()

    @kt.synchronized
    def ongoing_workers(self) -> dict[str, str]:
        return {tuner_id: trial.trial_id for tuner_id, trial in self.ongoing_trials.items()}

    @kt.synchronized
    def search_done(self) -> bool:
        """Nothing running or queued, and nothing more to start."""
        if self.ongoing_trials or self._retry_queue:
            return False
        return bool(self.stop_reason) or self.exhausted or len(self.trials) >= self.max_trials


class RandomOracle(DefaultFirst, SafeOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(DefaultFirst, SafeOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(DefaultFirst, SafeOracle, kt.oracles.HyperbandOracle):
    pass


class SpaceHyperModel(kt.HyperModel):
    def __init__(self, space: Space, task: TrainingTask):
        super().__init__(name=space.name)
        self.space = space
        self.task = task

    def build(self, hp):
        """Build and check the model: a trial whose model breaks a rule fails before training."""
        model = self.space.build(hp, self.task)
        try:
            rules.check_model(model)
        except rules.RuleViolation as e:
            raise kt.errors.FailedTrialError(f"search space {self.space.name}: {e}") from None
        return model


def training_task(settings: SearchSettings) -> TrainingTask:
    return TrainingTask(
        input_shape=IMAGE_SHAPE,
        num_classes=len(CLASS_NAMES),
        train_size=settings.train_size,
        epochs=settings.max_epochs,
    )


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


def format_values(values: dict, defaults: dict) -> str:
    """The hyperparameters that differ from the space's default point."""
    changed = {
        k: v for k, v in values.items() if not k.startswith("tuner/") and defaults.get(k) != v
    }
    if not changed:
        return "default point"
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in changed.items())


class SweepTuner:
    """Tuner mixin: our trial, crash-safe bookkeeping, and one progress line per trial."""

    def __init__(self, *, oracle, hypermodel, settings: SearchSettings,
                 data: trial_module.TrainingData, say: Callable[[str], None], progress=None,
                 worker: str | None = None):
        kt.Tuner.__init__(
            self,
            oracle=oracle,
            hypermodel=hypermodel,
            directory=settings.directory,
            project_name=settings.project_name,
            overwrite=False,
        )
        self.settings = settings
        self.data = data
        self.say = say
        self.progress = progress
        self.worker = worker  # this process's id in a distributed search, else None
        self.ended_here = 0  # trials this process ended
        self.started = time.monotonic()
        self.deadline = self.started + settings.time_budget if settings.time_budget else None
        # KerasTuner reloads a project only if <tuner_id>.json exists, which it first writes when
        # a trial ends: written now, a kill during the first trial resumes instead of restarting.
        self.save()

    def trial_dir(self, trial_id: str) -> Path:
        return Path(self.get_trial_dir(trial_id))

    def _build_hypermodel(self, hp):
        keras.utils.set_random_seed(trial_module.trial_seed(self.settings.seed, hp.values))
        return super()._build_hypermodel(hp)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        model = self._try_build(hp)
        # Hyperband rebuilds a continued trial from this config and its best checkpoint.
        state.write_json(self._get_build_config_fname(trial.trial_id), model.get_build_config())
        parent = hp.values.get("tuner/trial_id")
        parent_history = (
            trial_module.load_record(self.trial_dir(parent))["history"] if parent else []
        )
        return trial_module.fit(
            model,
            trial_id=trial.trial_id,
            trial_dir=self.trial_dir(trial.trial_id),
            batch_size=hp.get("batch_size"),
            data=self.data,
            epochs=kwargs.get("epochs", self.settings.max_epochs),
            initial_epoch=kwargs.get("initial_epoch", 0),
            patience=self.settings.patience,
            parent_history=parent_history,
            tuner_callbacks=kwargs.get("callbacks", []),
            say=self.say if not self.settings.quiet else lambda _: None,
            deadline=self.deadline,
            tensorboard=self.settings.tensorboard,
            worker=self.worker,
            best_so_far=self.best_score(),
        )

    def pre_create_trial(self):
        """Start no trial that would not end within the time budget (by the mean trial so far)."""
        if self.deadline is None:
            return
        durations = [
            trial_module.load_record(self.trial_dir(t.trial_id)).get("train_seconds", 0.0)
            for t in self.known_trials() if t.status in ENDED
        ]
        expected = sum(durations) / len(durations) if durations else 0.0
        if time.monotonic() + expected > self.deadline:
            raise TimeBudgetReached()

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._event("trial_start", trial=trial.trial_id)
        summary = format_values(trial.hyperparameters.values, default_values(trial.hyperparameters))
        self.say(f"trial {trial.trial_id} started: {summary}")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.ended_here += 1
        self._event("trial_end", trial=trial.trial_id, status=trial.status)
        trial_module.discard_backup(self.trial_dir(trial.trial_id))
        line = self.trial_line(trial)
        self.say(line)
        if self.progress:
            ended = self.ended_trials()
            self.progress(ended, self.settings.max_trials, line)

    def _event(self, event: str, **fields) -> None:
        where = {"worker": self.worker} if self.worker else {}
        state.append_event(Path(self.project_dir), event=event, **fields, **where)

    def trial_line(self, trial, worker: str | None = None) -> str:
        record = trial_module.load_record(self.trial_dir(trial.trial_id))
        best = state.best_epoch(record["history"])
        took = format_duration(record.get("train_seconds", 0.0))
        done = self.ended_trials()
        if trial.status == "COMPLETED" and best:
            result = (
                f"val_acc {best['val_accuracy']:.4f} at epoch {best['epoch'] + 1} "
                f"(train {best.get('accuracy', float('nan')):.4f})"
            )
        else:
            result = f"{trial.status}: {state.failure_reason(trial.message)}"
        where = f" on {worker}" if worker else ""
        return (
            f"trial {trial.trial_id} done{where} [{done}/{self.settings.max_trials}]: {result}, "
            f"{len(record['history'])} epochs in {took} | best so far {self._best_line()}"
        )

    def known_trials(self) -> list:
        """Every trial of the search: the oracle's own, or on a worker (whose oracle lives in the
        chief) what the chief last wrote to the shared folder."""
        if self._is_worker():
            return [kt_trial.Trial.load(str(path))
                    for path in Path(self.project_dir).glob("trial_*/trial.json")]
        return list(self.oracle.trials.values())

    def ended_trials(self) -> int:
        """Trials that will not run again: completed or failed."""
        return sum(t.status in ENDED for t in self.known_trials())

    def completed_trials(self) -> list:
        completed = [t for t in self.known_trials() if t.status == "COMPLETED"]
        return sorted(completed, key=lambda t: t.score, reverse=True)

    def best_score(self) -> float | None:
        best = self.completed_trials()
        return best[0].score if best else None

    def _best_line(self) -> str:
        best = self.completed_trials()
        return f"{best[0].score:.4f} (trial {best[0].trial_id})" if best else "none"

    def announce_start(self) -> None:
        s = self.settings
        trials = self.known_trials()
        ended = self.ended_trials()
        self.say(
            f"search {s.project_name} in {s.project_dir}: space {s.space}, tuner {s.tuner}, "
            f"{s.max_trials} trials of at most {s.max_epochs} epochs, "
            f"split seed {s.seed} ({s.train_size} train / {s.val_size} val)"
        )
        if trials:
            retry = self.oracle._retry_queue
            pending = f", trial {', '.join(retry)} interrupted: continuing it" if retry else ""
            self.say(f"resuming: {ended} trials finished and kept{pending}")

    def search_until_done(self) -> None:
        try:
            self.search(verbose=0)
        except TimeBudgetReached:
            ended = self.ended_trials()
            self.say(
                f"time budget of {format_duration(self.settings.time_budget)} reached: "
                f"{ended}/{self.settings.max_trials} trials ended, the rest saved. "
                "Run the same command again to continue."
            )
        self.raise_if_stopped_early()

    def raise_if_stopped_early(self) -> None:
        if self.oracle.stop_reason:
            raise SweepError(
                f"{self.oracle.stop_reason}. "
                "Check the search space; the failed trials are kept in the search."
            )

    def outcome(self) -> SearchOutcome:
        trials = self.known_trials()
        best = self.completed_trials()
        outcome = SearchOutcome(
            project_dir=self.settings.project_dir,
            completed=sum(t.status == "COMPLETED" for t in trials),
            failed=sum(t.status in ("FAILED", "INVALID") for t in trials),
            best_trial=best[0].trial_id if best else None,
            best_val_accuracy=best[0].score if best else None,
        )
        ended = outcome.completed + outcome.failed
        state_line = "search done" if ended >= self.settings.max_trials else "search stopped"
        self.say(
            f"{state_line}: {outcome.completed} completed, {outcome.failed} failed; "
            f"best {self._best_line()}. See: {report_command(self.settings)}"
        )
        return outcome


class SearchTuner(SweepTuner, kt.Tuner):
    pass


class HyperbandSearchTuner(SweepTuner, kt.Hyperband):
    pass


def make_oracle(settings: SearchSettings):
    common = dict(
        objective=kt.Objective("val_accuracy", "max"),
        # KerasTuner treats seed 0 as "random" (#9): shift the user's seed by one.
        seed=settings.seed + 1,
        max_consecutive_failed_trials=MAX_CONSECUTIVE_FAILURES,
    )
    if settings.tuner == "hyperband":
        # Hyperband has no trial count of its own: it iterates until --max-trials caps it
        # (see README), instead of stopping after one pass over its brackets.
        oracle = HyperbandOracle(max_epochs=settings.max_epochs, factor=3,
                                 hyperband_iterations=HYPERBAND_ITERATIONS, **common)
        oracle.max_trials = settings.max_trials
        return oracle
    oracle_class = BayesianOracle if settings.tuner == "bayesian" else RandomOracle
    return oracle_class(max_trials=settings.max_trials, **common)


def make_tuner(settings: SearchSettings, space: Space, split: Split, say,
               progress=None, worker: str | None = None) -> SweepTuner:
    task = training_task(settings)
    tuner_class = HyperbandSearchTuner if settings.tuner == "hyperband" else SearchTuner
    try:
        # KerasTuner prints "Reloading Tuner from ..."; `announce_start` says it our way.
        with contextlib.redirect_stdout(io.StringIO()):
            return tuner_class(
                oracle=make_oracle(settings),
                hypermodel=SpaceHyperModel(space, task),
                settings=settings,
                data=trial_module.TrainingData.from_split(split, len(CLASS_NAMES)),
                say=say,
                progress=progress,
                worker=worker,
            )
    except (json.JSONDecodeError, RuntimeError) as e:
        raise SweepError(
            f"Could not open the search in {settings.project_dir} ({e}). "
            "Run with --fresh to start over (the old search is kept aside)."
        ) from None
