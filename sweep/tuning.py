"""KerasTuner subclasses that run `sweep.trial` under KerasTuner's oracles.

Importing this module loads TensorFlow; `sweep.search` imports it only after its quick checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine import trial as kt_trial

from search_spaces.blocks import TrainingTask
from sweep import backend, interrupts, ranking, rules, spaces, state
from sweep import trial as trial_module
from sweep.data import CLASS_NAMES, IMAGE_SHAPE, Split
from sweep.errors import SweepError, TimeBudgetReached
from sweep.settings import SearchOutcome, SearchSettings, format_duration, report_command
from sweep.spaces import Space

RULE_CHECK_POINTS = 4  # random points of a space checked (with its default) before a search

state.install_atomic_json_writes()
# KerasTuner 1.4.8 ships with DEBUG on: every failed trial dumps its traceback on stderr. Our
# trial line gives the reason, the report too, and trial.json keeps the whole traceback.
kt_config.DEBUG = False

ENDED = ("COMPLETED", "FAILED", "INVALID")
# KerasTuner aborts after this many failed trials in a row; a space that always fails is a bug.
MAX_CONSECUTIVE_FAILURES = 3
HYPERBAND_ITERATIONS = 1000  # in effect unlimited: --max-trials ends a Hyperband search
HALVING_FACTOR = 3  # successive halving keeps the best third of a rung, at 3x its epochs


def default_values(space: hp_module.HyperParameters) -> dict:
    """The default point of a space: each active hyperparameter at its default."""
    hps = hp_module.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.default
    return hps.values


class DefaultFirst:
    """Oracle mixin: the space's default point is the first trial of every search, and no
    configuration is proposed twice.

    KerasTuner starts with a random point; a space's default is the model its author measured,
    so trying it first gives every search a known-good baseline from its first trial on.
    """

    def _random_values(self):
        defaults = default_values(self.hyperparameters)
        if not self._duplicate(defaults):
            return defaults
        return super()._random_values()

    def _duplicate(self, values):
        """Tried before, as a configuration: KerasTuner's own check hashes the tuner's
        bookkeeping values too, so a configuration tried on a rung would look new."""
        tried = {ranking.config_key(t.hyperparameters.values) for t in self.trials.values()}
        return ranking.config_key(values) in tried


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
    def workers(self) -> set[str]:
        """Every worker that asked for a trial, copied under the oracle's lock: the chief's gRPC
        threads add to `tuner_ids` while it is read."""
        return set(self.tuner_ids)

    @kt.synchronized
    def search_done(self) -> bool:
        """Nothing running or queued, and nothing more to start."""
        if self.ongoing_trials or self._retry_queue:
            return False
        return bool(self.stop_reason) or self.exhausted or len(self.trials) >= self.max_trials


def runs_of(trials) -> list[ranking.Run]:
    """KerasTuner's trials as `sweep.ranking` ranks them."""
    return [ranking.Run(t.trial_id, t.hyperparameters.values, t.status == "COMPLETED", t.score)
            for t in trials]


def _running(status) -> dict:
    return {"status": kt_trial.TrialStatus.RUNNING, "values": status}


IDLE = {"status": kt_trial.TrialStatus.IDLE, "values": None}
STOPPED = {"status": kt_trial.TrialStatus.STOPPED, "values": None}


class Finalists:
    """Oracle mixin: the search's last `REPLICAS * finalists` trials retrain its best fully
    trained configurations with other seeds, so the winner is chosen by a mean, not one draw.

    The search's own oracle proposes every trial before them. Once it has, and its trials have
    ended, the best `finalists` configurations (by `sweep.ranking`) are retrained, each with
    `tuner/replica` 1..REPLICAS (the trial seed changes with it). Slots left over (fewer fully
    trained configurations than finalists) go back to the search's oracle, so `--max-trials`
    stays exact. Everything is derived from the trials, so a resumed search picks up where it was.
    """

    finalists = 0
    max_epochs = 0

    def _awaited(self, trials: list) -> bool:
        """Whether any of `trials` is still to end: running on a worker, or queued to run again.
        A trial a killed process left RUNNING is queued on reload; one found in neither place
        never runs again, and waiting for it would wait for ever."""
        pending = {t.trial_id for t in self.ongoing_trials.values()} | set(self._retry_queue)
        return any(t.trial_id in pending for t in trials)

    def search_slots(self) -> int:
        return self.max_trials - ranking.REPLICAS * self.finalists


    def _next_replica(self) -> dict | None:
        chosen: list[str] = []
        for ranked in ranking.rank(runs_of(self.trials.values()), self.max_epochs):
            key = ranking.config_key(ranked.run.values)
            if key not in chosen:
                chosen.append(key)
        done = {(ranking.config_key(t.hyperparameters.values),
                 t.hyperparameters.values.get(ranking.REPLICA_KEY))
                for t in self.trials.values()}
        for key in chosen[: self.finalists]:
            for replica in range(1, ranking.REPLICAS + 1):
                if (key, replica) not in done:
                    values = {**json.loads(key), ranking.REPLICA_KEY: replica}
                    if self.max_epochs:
                        values[ranking.EPOCHS_KEY] = self.max_epochs
                    return values
        return None

    def populate_space(self, trial_id):
        searched = [t for t in self.trials.values()
                    if ranking.REPLICA_KEY not in t.hyperparameters.values]
        if len(searched) < self.search_slots():
            response = super().populate_space(trial_id)
            if response["status"] != kt_trial.TrialStatus.STOPPED:
                return response  # else the search's oracle ran out early: finalists now
        if self._awaited(searched):
            return IDLE  # finalists are chosen once every searched trial has its score
        replica = self._next_replica()
        return _running(replica) if replica else super().populate_space(trial_id)


MIN_HALVING_SLOTS = 5  # 3 configurations, the best on a third, then on all the epochs


def halving_plan(slots: int, finalists: int, max_epochs: int) -> list[tuple[int, int]]:
    """(configurations, epochs) per rung: n on a ninth of `max_epochs`, n/3 on a third, n/9 (at
    least `finalists`) on all of it, with the largest n that fits `slots` trials; slots left
    over add configurations to the first rung. Under MIN_HALVING_SLOTS there is nothing to
    halve: every trial trains on all the epochs."""
    if slots < MIN_HALVING_SLOTS:
        return [(max(slots, 1), max_epochs)]

    def sizes(n: int) -> list[int]:
        second = math.ceil(n / HALVING_FACTOR)
        return [n, second, min(second, max(math.ceil(n / HALVING_FACTOR**2), finalists))]

    n = 1
    while sum(sizes(n + 1)) <= slots:
        n += 1
    planned = sizes(n)
    planned[0] += slots - sum(planned)
    epochs = [max(1, round(max_epochs / HALVING_FACTOR**2)),
              max(1, round(max_epochs / HALVING_FACTOR)), max_epochs]
    return list(zip(planned, epochs, strict=True))


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class HalvingOracle(kt.oracles.RandomSearchOracle):
    """Successive halving with restarts: the default tuner.

    Rung 0 trains many configurations (the space's default point first) on a ninth of
    `--max-epochs`, rung 1 the best third of them (the default point always among them) on a
    third, rung 2 the best of those on the whole schedule. Every trial trains from scratch on a
    learning-rate schedule that ends with its own epochs, so a short trial is scored on a
    finished schedule, not halfway up a long one (what KerasTuner's Hyperband does by
    continuing trials). A rung is promoted once it has ended. Rung sizes come from the trial
    slots before the finalists (`halving_plan`).
    """

    RUNG_KEY = "tuner/rung"

    def _rung(self, trial) -> int:
        return trial.hyperparameters.values.get(self.RUNG_KEY, 0)

    def populate_space(self, trial_id):
        plan = halving_plan(self.search_slots(), self.finalists, self.max_epochs)
        sizes, epochs = [n for n, _ in plan], [e for _, e in plan]
        by_rung = [[t for t in self.trials.values() if self._rung(t) == r]
                   for r in range(len(plan))]
        if len(by_rung[0]) < sizes[0]:
            values = self._random_values()
            if values is not None:
                return _running({**values, self.RUNG_KEY: 0, ranking.EPOCHS_KEY: epochs[0]})
        for rung in range(1, len(sizes)):
            if len(by_rung[rung]) >= sizes[rung]:
                continue
            if self._awaited(by_rung[rung - 1]):
                return IDLE  # a rung is promoted once all of it has a score
            candidates = self._candidates(by_rung[rung - 1], by_rung[rung])
            if rung == 1 and len(by_rung[1]) == sizes[1] - 1:
                candidates = [t for t in candidates if self._is_default(t)] or candidates
            if candidates:
                return self._promote(candidates[0], rung, epochs[rung])
        return self._beyond_plan(by_rung, epochs)

    def _is_default(self, trial) -> bool:
        """The space's default point: it always reaches the second rung (in its last slot if
        its first-rung score did not earn one). A ninth of the schedule underrates a strongly
        regularised net, and the default point is the model its author measured at full length:
        it is judged on a third of the schedule at least, beside the configurations that beat
        it on the first rung."""
        default = ranking.config_key(default_values(self.hyperparameters))
        return ranking.config_key(trial.hyperparameters.values) == default

    def _candidates(self, below: list, promoted: list) -> list:
        """Completed trials of a rung whose configuration is not yet in the next, best first."""
        taken = {ranking.config_key(t.hyperparameters.values) for t in promoted}
        return sorted(
            (t for t in below if t.status == "COMPLETED" and t.score is not None
             and ranking.config_key(t.hyperparameters.values) not in taken),
            key=lambda t: t.score, reverse=True)

    def _promote(self, trial, rung: int, epochs: int) -> dict:
        values = ranking.config_of(trial.hyperparameters.values)
        return _running({**values, self.RUNG_KEY: rung, ranking.EPOCHS_KEY: epochs})

    def _beyond_plan(self, by_rung: list[list], epochs: list[int]) -> dict:
        """Slots the plan leaves (fewer finalists than planned, or a small --max-trials): the
        next-best configuration goes up a rung, the highest first; else a new configuration."""
        for rung in range(len(by_rung) - 1, 0, -1):
            candidates = self._candidates(by_rung[rung - 1], by_rung[rung])
            if candidates:
                return self._promote(candidates[0], rung, epochs[rung])
        values = self._random_values()
        if values is None:
            return STOPPED
        return _running({**values, self.RUNG_KEY: 0, ranking.EPOCHS_KEY: epochs[0]})


class RandomOracle(DefaultFirst, SafeOracle, Finalists, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(DefaultFirst, SafeOracle, Finalists, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(DefaultFirst, SafeOracle, Finalists, kt.oracles.HyperbandOracle):
    pass


class SuccessiveHalvingOracle(DefaultFirst, SafeOracle, Finalists, HalvingOracle):
    pass


class SpaceHyperModel(kt.HyperModel):
    def __init__(self, space: Space, task: TrainingTask, precision: str):
        super().__init__(name=space.name)
        self.space = space
        self.task = task
        self.precision = precision

    def build(self, hp):
        """Build and check the model: a trial whose model breaks a rule fails before training.
        Its learning-rate schedule spans the trial's own epochs (`ranking.trial_epochs`).

        The precision is set here, for each model: KerasTuner calls `clear_session()` before
        every build, which resets Keras's global dtype policy to float32."""
        backend.set_policy(self.precision)
        model = self.space.build(hp, trial_task(self.task, hp.values))
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

    def run_trial(self, trial, *args, **kwargs):
        # Not Hyperband's: it would continue a promoted trial from its parent's epochs.
        return kt.Tuner.run_trial(self, trial, *args, **kwargs)

    def _build_hypermodel(self, hp):
        """Seeded from the search seed and the values; never from a parent's weights (Hyperband
        would load them): every trial trains from scratch on its own complete schedule."""
        keras.utils.set_random_seed(trial_module.trial_seed(self.settings.seed, hp.values))
        return kt.Tuner._build_hypermodel(self, hp)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        model = self._try_build(hp)
        epochs = ranking.trial_epochs(hp.values, self.settings.max_epochs)
        fully_trained = epochs >= self.settings.max_epochs
        return trial_module.fit(
            model,
            trial_id=trial.trial_id,
            trial_dir=self.trial_dir(trial.trial_id),
            batch_size=hp.get("batch_size"),
            data=self.data,
            epochs=epochs,
            patience=self.settings.patience,
            tuner_callbacks=kwargs.get("callbacks", []),
            say=self.say if not self.settings.quiet else lambda _: None,
            deadline=self.deadline,
            tensorboard=self.settings.tensorboard,
            worker=self.worker,
            # The report's confusion matrix is for the best fully trained model only.
            best_so_far=self.best_score() if fully_trained else math.inf,
        )

    def pre_create_trial(self):
        """Start no trial that would not end within the time budget (by the mean trial so far),
        nor after Ctrl-C."""
        interrupts.check()
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
        self.say(f"trial {trial.trial_id} started: {self.describe(trial)}")

    def describe(self, trial) -> str:
        """A new configuration by what differs from the default point; a rung or a finalist by
        the trial that first tried its configuration."""
        values = trial.hyperparameters.values
        key = ranking.config_key(values)
        first = min((t.trial_id for t in self.known_trials()
                     if ranking.config_key(t.hyperparameters.values) == key), default=None)
        epochs = ranking.trial_epochs(values, self.settings.max_epochs)
        if first is None or first == trial.trial_id:
            summary = format_values(values, default_values(trial.hyperparameters))
            return summary if epochs >= self.settings.max_epochs \
                else f"{summary} ({epochs} epochs)"
        if ranking.REPLICA_KEY in values:
            return (f"finalist: trial {first}'s configuration with seed "
                    f"{values[ranking.REPLICA_KEY] + 1} of {ranking.REPLICAS + 1}")
        return f"trial {first}'s configuration on {epochs} epochs"

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
            f"{self.time_left_line()}"
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

    def _runs(self) -> list[ranking.Run]:
        return runs_of(self.known_trials())

    def ranked(self) -> list[ranking.Ranked]:
        """Fully trained trials, best first (`sweep.ranking`)."""
        return ranking.rank(self._runs(), self.settings.max_epochs)

    def best_score(self) -> float | None:
        scores = [r.run.score for r in self.ranked()]
        return max(scores) if scores else None

    def _best_line(self) -> str:
        ranked = self.ranked()
        if ranked:
            best = ranked[0]
            seeds = f", mean {best.mean:.4f} +- {best.std:.4f} of {best.seeds} seeds" \
                if best.seeds > 1 else ""
            return f"{best.run.score:.4f} (trial {best.run.trial}{seeds})"
        short = ranking.best_unfinished(self._runs(), self.settings.max_epochs)
        if short:
            epochs = ranking.trial_epochs(short.values, self.settings.max_epochs)
            return (f"none fully trained yet (screening: {short.score:.4f}, trial {short.trial}, "
                    f"{epochs} epochs)")
        return "none"

    def announce_start(self) -> None:
        s = self.settings
        trials = self.known_trials()
        ended = self.ended_trials()
        self.say(
            f"search {s.project_name} in {s.project_dir}: space {s.space}, tuner {s.tuner}, "
            f"{s.max_trials} trials of at most {s.max_epochs} epochs, "
            f"split seed {s.seed} ({s.train_size} train / {s.val_size} val), "
            f"{backend.name()} backend in {s.precision}"
        )
        self.say(f"plan: {self.plan_line()}")
        if trials:
            retry = self.oracle._retry_queue
            pending = f", trial {', '.join(retry)} interrupted: continuing it" if retry else ""
            self.say(f"resuming: {ended} trials finished and kept{pending}")

    def plan_line(self) -> str:
        """What the search will train, in epochs: the measure of its cost on any machine."""
        s, finalists = self.settings, self.settings.finalists_used
        searched = s.max_trials - ranking.REPLICAS * finalists
        if s.tuner == "halving":
            steps = ", ".join(f"{counted(n, 'configuration')} on {counted(e, 'epoch')}"
                              for n, e in halving_plan(searched, finalists, s.max_epochs))
            search = f"successive halving: {steps}"
        else:
            search = f"{searched} trials of at most {s.max_epochs} epochs"
        if finalists:
            best = "the best" if finalists == 1 else f"the {finalists} best"
            search += (f", then {best} fully trained retrained with "
                       f"{ranking.REPLICAS} more seeds ({s.max_epochs} epochs each)")
        total = self.planned_epochs()
        return search + (f": {total} epochs in all" if total else "")

    def planned_epochs(self) -> int | None:
        """Epochs the whole search trains (at most, where early stopping may cut trials);
        None for Hyperband, whose trial lengths depend on where --max-trials cuts it."""
        s, finalists = self.settings, self.settings.finalists_used
        searched = s.max_trials - ranking.REPLICAS * finalists
        if s.tuner == "hyperband":
            return None
        if s.tuner == "halving":
            search = sum(n * e for n, e in halving_plan(searched, finalists, s.max_epochs))
        else:
            search = searched * s.max_epochs
        return search + ranking.REPLICAS * finalists * s.max_epochs

    def time_left_line(self) -> str:
        """The plan's epochs not yet trained, at this search's mean speed so far."""
        planned = self.planned_epochs()
        records = [trial_module.load_record(self.trial_dir(t.trial_id))
                   for t in self.known_trials()]
        trained = sum(len(r["history"]) for r in records)
        seconds = sum(r.get("train_seconds", 0.0) for r in records)
        if not planned or not trained:
            return ""
        left = max(0, planned - trained) * seconds / trained
        return f" | about {format_duration(left)} left ({seconds / trained:.0f} s an epoch)"

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
        best = self.ranked()
        outcome = SearchOutcome(
            project_dir=self.settings.project_dir,
            completed=sum(t.status == "COMPLETED" for t in trials),
            failed=sum(t.status in ("FAILED", "INVALID") for t in trials),
            best_trial=best[0].run.trial if best else None,
            best_val_accuracy=best[0].run.score if best else None,
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


def make_oracle(settings: SearchSettings) -> Finalists:
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
    else:
        oracle_class = {"bayesian": BayesianOracle, "random": RandomOracle,
                        "halving": SuccessiveHalvingOracle}[settings.tuner]
        oracle = oracle_class(max_trials=settings.max_trials, **common)
    oracle.max_epochs = settings.max_epochs
    oracle.finalists = settings.finalists_used
    return oracle


def make_tuner(settings: SearchSettings, space: Space, split: Split, say,
               progress=None, worker: str | None = None) -> SweepTuner:
    task = training_task(settings)
    tuner_class = HyperbandSearchTuner if settings.tuner == "hyperband" else SearchTuner
    try:
        # KerasTuner prints "Reloading Tuner from ..."; `announce_start` says it our way.
        with contextlib.redirect_stdout(io.StringIO()):
            return tuner_class(
                oracle=make_oracle(settings),
                hypermodel=SpaceHyperModel(space, task, settings.precision),
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
