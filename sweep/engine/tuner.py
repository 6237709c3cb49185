"""The tuner: one trial after another under an oracle, each trained by `sweep.engine.trial`, with
one progress line per trial, crash-safe bookkeeping and the search's outcome."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import math
import statistics
import time
from pathlib import Path

import keras
import keras_tuner as kt
from keras_tuner.engine import trial as kt_trial

from sweep import backend, interrupts, ranking, state
from sweep.data import CLASS_NAMES, Split
from sweep.engine import compat
from sweep.engine import trial as trial_module
from sweep.engine.hypermodel import SpaceHyperModel, training_task
from sweep.engine.oracles import (
    counted,
    default_values,
    halving_plan,
    make_oracle,
    planned_searches,
    runs_of,
)
from sweep.errors import SweepError, TimeBudgetReached, TrialTakenAway
from sweep.settings import SearchOutcome, SearchSettings, format_duration, report_command
from sweep.spaces import Space

log = logging.getLogger(__name__)


class SweepTuner:
    """Tuner mixin: our trial, crash-safe bookkeeping, and one progress line per trial."""

    def __init__(self, *, oracle, hypermodel, settings: SearchSettings,
                 data: trial_module.TrainingData, progress=None,
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
        self.progress = progress
        self.worker = worker  # this process's id in a distributed search, else None
        self.ended_here = 0  # trials this process ended
        self.taken_away: str | None = None  # a worker's last trial handed to another
        self.started = time.monotonic()
        self.deadline = self.started + settings.time_budget if settings.time_budget else None
        self.plan_timed = False  # said how long the plan takes on this machine
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
        return trial_module.fit(
            model,
            trial_id=trial.trial_id,
            trial_dir=self.trial_dir(trial.trial_id),
            batch_size=hp.get("batch_size"),
            data=self.data,
            epochs=epochs,
            patience=self.settings.patience,
            tuner_callbacks=[*kwargs.get("callbacks", []), PlanTimer(self)],
            quiet=self.settings.quiet,
            deadline=self.deadline,
            tensorboard=self.settings.tensorboard,
            worker=self.worker,
            machine=backend.machine(self.settings.precision),
            behind=self.behind_the_best(trial, epochs),
        )

    def behind_the_best(self, trial, epochs: int) -> trial_module.BehindTheBest | None:
        """`--stop-behind`'s rule for `trial`, against the best fully trained trial's curve:
        for a trial on the whole schedule, not a finalist (a seed of the best configuration is
        measured, never cut), once a best exists. The margin is the search's latest policy,
        read from its record at each trial: a worker follows the chief's latest run."""
        try:
            recorded = state.read_search_record(Path(self.project_dir))["settings"]
            points = recorded.get("stop_behind")
        except SweepError:  # a record without its settings is one too (`read_search_record`)
            points = self.settings.stop_behind
        if (points is None or epochs < self.settings.max_epochs
                or ranking.REPLICA_KEY in trial.hyperparameters.values):
            return None
        best = next((r.run.trial for r in self.ranked() if r.run.trial != trial.trial_id), None)
        if best is None:
            return None
        try:
            history = state.read_trial_record(self.trial_dir(best))["history"]
        except (SweepError, KeyError):  # unreadable now: this trial runs its whole schedule
            return None
        return trial_module.BehindTheBest.of(points / 100, best, history)

    def pre_create_trial(self):
        interrupts.check()  # no new trial after Ctrl-C

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.check_time_for(trial)
        self._event("trial_start", trial=trial.trial_id)
        log.info(f"trial {trial.trial_id} started: {self.describe(trial)}")

    def check_time_for(self, trial) -> None:
        """Start no trial that would not end within the time budget; it stays the search's next
        trial, for the next run.

        It is expected to train its own schedule's epochs not yet trained (a rung's few or a
        full schedule's many), times the share of their schedules the ended trials trained
        (early stopping ends some sooner), at this machine's typical epoch. With no epoch
        timed here, the trial starts, and stops at an epoch boundary if time runs out."""
        if self.deadline is None:
            return
        ended = self.records(ended_only=True)
        typical = self.typical_epoch_here([history for _, history in ended])
        if not typical:
            return
        trained = [(t, history) for t, history in ended
                   if t.status == state.COMPLETED and history]  # not a failure's few epochs
        share = statistics.fmean(
            min(1.0, len(history) / self.schedule(t)) for t, history in trained) if trained else 1.0
        done = len(state.read_trial_record(self.trial_dir(trial.trial_id))["history"])
        expected = typical * max(self.schedule(trial) * share - done, 1)
        left = self.deadline - time.monotonic()
        if expected > left:
            raise TimeBudgetReached(
                f"trial {trial.trial_id} would take about {format_duration(expected)} here; "
                f"{format_duration(max(left, 0))} were left")

    def schedule(self, trial) -> int:
        """The epochs of `trial`'s schedule."""
        return ranking.trial_epochs(trial.hyperparameters.values, self.settings.max_epochs)

    def describe(self, trial) -> str:
        """A new configuration by what differs from the default point; a rung or a finalist by
        the trial that first tried its configuration."""
        values = trial.hyperparameters.values
        key = ranking.config_key(values)
        first = min((t.trial_id for t in self.known_trials()
                     if ranking.config_key(t.hyperparameters.values) == key),
                    key=ranking.trial_number, default=None)
        epochs = ranking.trial_epochs(values, self.settings.max_epochs)
        if first is None or first == trial.trial_id:
            summary = ranking.format_values(values, default_values(trial.hyperparameters))
            return summary if epochs >= self.settings.max_epochs \
                else f"{summary} ({epochs} epochs)"
        if ranking.REPLICA_KEY in values:
            return (f"finalist: trial {first}'s configuration with seed "
                    f"{values[ranking.REPLICA_KEY] + 1} of {ranking.REPLICAS + 1}")
        return f"trial {first}'s configuration on {epochs} epochs"

    def _try_run_and_update_trial(self, trial, *args, **kwargs):
        try:
            super()._try_run_and_update_trial(trial, *args, **kwargs)
        except TrialTakenAway:
            self.taken_away = trial.trial_id

    def on_trial_end(self, trial):
        if self.taken_away == trial.trial_id:
            # Neither ended nor its backup discarded: the worker that has it now trains on.
            self.taken_away = None
            log.info(f"trial {trial.trial_id} was handed to another worker while this one was "
                     "silent: this worker leaves it and asks for another")
            return
        # The backup goes before the trial is saved as ended: a stop after that save would
        # leave it for good; one before it resumes the trial without it (a fit that ended is
        # not trained again).
        trial_module.discard_backup(self.trial_dir(trial.trial_id))
        super().on_trial_end(trial)
        self.ended_here += 1
        self._event("trial_end", trial=trial.trial_id, status=trial.status)
        if not self._is_worker():
            self.prune_checkpoints()
        line = self.trial_line(trial)
        log.info(line)
        if self.progress:
            ended = self.ended_trials()
            self.progress(ended, self.settings.max_trials, line)
        self.record_best_confusion()

    def _event(self, event: str, **fields) -> None:
        where = {"worker": self.worker} if self.worker else {}
        state.append_event(Path(self.project_dir), event=event, **fields, **where)

    def trial_line(self, trial, worker: str | None = None) -> str:
        record = state.read_trial_record(self.trial_dir(trial.trial_id))
        best = state.best_epoch(record["history"])
        took = format_duration(record.get("train_seconds", 0.0))
        done = self.ended_trials()
        if trial.status == state.COMPLETED and best:
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
        return sum(t.status in state.ENDED for t in self.known_trials())

    def _runs(self) -> list[ranking.Run]:
        return runs_of(self.known_trials())

    def ranked(self) -> list[ranking.Ranked]:
        """Fully trained trials, best first (`sweep.ranking`)."""
        return ranking.rank(self._runs(), self.settings.max_epochs)

    def prune_checkpoints(self) -> None:
        """Delete the weights of every ended trial but the best `--keep-checkpoints` fully
        trained ones: screening, failed and outranked trials. A running trial keeps its own, and
        nothing else needs them: every trial trains from scratch. Done where the oracle is
        (this process, or the chief), which knows every trial."""
        keep = {r.run.trial for r in self.ranked()[: self.settings.keep_checkpoints]}
        deleted = []
        for trial in self.known_trials():
            checkpoint = self.trial_dir(trial.trial_id) / state.CHECKPOINT_FILE
            if trial.status in state.ENDED and trial.trial_id not in keep and checkpoint.exists():
                try:
                    checkpoint.unlink()
                    deleted.append(trial.trial_id)
                except OSError as e:  # a shared folder may refuse: the search goes on
                    log.warning(f"could not delete {checkpoint}: {e}")
        if deleted:
            log.info(f"deleted the weights of trial {', '.join(deleted)} (--keep-checkpoints "
                     f"{self.settings.keep_checkpoints} keeps the best fully trained ones)")

    def record_best_confusion(self) -> None:
        """Give the best fully trained trial, by the report's ranking, the confusion matrix the
        report shows for it, if its record has none and its weights are here: one pass over
        the validation images when a trial ended that changed the best (or a run ends after a
        kill skipped it), outside the trial, so that a failure here fails no trial. With the
        finalists, the best by mean may be a run that never beat the best single score.
        Done by the process that ended the trial, which has the data (a worker on its own
        trials). A checkpoint another process deletes meanwhile, or one it cannot read, costs
        a warning and the report's figure, not the run."""
        ranked = self.ranked()
        if not ranked:
            return
        trial_id = ranked[0].run.trial
        trial_dir = self.trial_dir(trial_id)
        if "confusion" in state.read_trial_record(trial_dir) or \
                not (trial_dir / state.CHECKPOINT_FILE).exists():
            return
        trial = next(t for t in self.known_trials() if t.trial_id == trial_id)
        with interrupts.deferred():  # a Ctrl-C waits for the pass, then stops between trials
            try:
                seconds = trial_module.record_confusion(
                    self._try_build(trial.hyperparameters), trial_dir, self.data)
            except Exception as e:  # noqa: BLE001 - a figure is not worth a finished run
                log.warning(f"no confusion matrix of trial {trial_id} for the report "
                            f"({type(e).__name__}: {e})")
                return
        log.info(f"confusion matrix of trial {trial_id}, the best, on the validation images, "
                 f"for the report ({seconds:.0f} s)")

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
        log.info(
            f"search {s.project_name} in {s.project_dir}: space {s.space}, tuner {s.tuner}, "
            f"{s.max_trials} trials of at most {s.max_epochs} epochs, "
            f"split seed {s.seed} ({s.train_size} train / {s.val_size} val), "
            f"{backend.name()} backend in {s.precision}"
        )
        log.info(f"plan: {self.plan_line()}")
        if trials:
            retry = self.oracle._retry_queue
            pending = f", trial {', '.join(retry)} interrupted: continuing it" if retry else ""
            log.info(f"resuming: {ended} trials finished and kept{pending}")
        self.announce_plan_time()

    def plan_line(self) -> str:
        """What the search will train, in epochs: the measure of its cost on any machine."""
        s, finalists = self.settings, self.settings.finalists_used
        searched = self.planned_searches()
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
        searched = self.planned_searches()
        if s.tuner == "hyperband":
            return None
        if s.tuner == "halving":
            search = sum(n * e for n, e in halving_plan(searched, finalists, s.max_epochs))
        else:
            search = searched * s.max_epochs
        return search + (s.max_trials - searched) * s.max_epochs  # every seed, run or to run

    def planned_searches(self) -> int:
        """As the oracle counts them (`oracles.planned_searches`), from the trials on disk: a
        worker's oracle is a gRPC client."""
        s = self.settings
        return planned_searches(self.known_trials(), s.max_trials, s.finalists_used,
                                s.max_epochs)

    def records(self, ended_only: bool = False) -> list[tuple[kt_trial.Trial, list[dict]]]:
        """Each trial of the search (or each ended one) with the epochs it recorded."""
        return [(t, state.read_trial_record(self.trial_dir(t.trial_id))["history"])
                for t in self.known_trials() if not ended_only or t.status in state.ENDED]

    def typical_epoch_here(self, histories: list[list[dict]]) -> float | None:
        """This machine's typical epoch in these histories."""
        return state.typical_epoch_seconds([e for history in histories for e in history],
                                           machine=backend.machine(self.settings.precision))

    def epochs_behind(self, records: list[tuple[kt_trial.Trial, list[dict]]]) -> int:
        """The plan's epochs the search is past: an ended trial's whole schedule (early stopping
        may have cut it short), an unended one's epochs so far."""
        return sum(self.schedule(t) if t.status in state.ENDED else len(history)
                   for t, history in records)

    def plan_time_left(self, anywhere: bool = False) -> tuple[float, float, bool] | None:
        """Seconds of the plan's epochs still ahead at this machine's typical epoch (the time
        budget's measure too), that epoch, and True; with `anywhere`, where no epoch was timed
        here (a chief that trains nothing), at the search's typical epoch, and False. None for
        Hyperband (no plan) or before an epoch is timed."""
        planned = self.planned_epochs()
        if not planned:
            return None
        records = self.records()
        histories = [history for _, history in records]
        typical, here = self.typical_epoch_here(histories), True
        if typical is None and anywhere:
            typical = state.typical_epoch_seconds([e for h in histories for e in h])
            here = False
        if typical is None:
            return None
        return max(0, planned - self.epochs_behind(records)) * typical, typical, here

    def time_left_line(self) -> str:
        timed = self.plan_time_left(anywhere=True)
        if timed is None or timed[0] < 1:  # unknown, or the plan's last trial has ended
            return ""
        left, typical, here = timed
        return (f" | about {format_duration(left)} left "
                f"({typical:.0f} s an epoch{' here' if here else ''})")

    def announce_plan_time(self) -> None:
        """Say once, as soon as this machine's epoch is known (at the start of a search resumed
        here, else after the second epoch it trains here), how long the plan takes, and whether
        the time budget ends it first: the plan's epochs mean nothing until timed. Not on a
        worker: the plan is the whole search's, which several workers share."""
        if self.plan_timed or self.worker:
            return
        if not self.planned_epochs():
            self.plan_timed = True  # Hyperband: nothing to count
            return
        timed = self.plan_time_left()
        if timed is None:
            return
        self.plan_timed = True
        left, typical, _ = timed
        if not left:
            return
        line = (f"plan here: about {format_duration(left)} of training left "
                f"at {typical:.0f} s an epoch")
        budget_left = self.deadline - time.monotonic() if self.deadline else math.inf
        if left > budget_left:
            line += (f"; the time budget ends this run in {format_duration(budget_left)} "
                     "(run the same command again to continue)")
        log.info(line)

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        state.write_kerastuner_json(self._get_tuner_fname(), self.get_state())

    def search_until_done(self) -> None:
        try:
            self.search_quietly()
        except TimeBudgetReached as stop:
            ended = self.ended_trials()
            why = f" ({stop})" if str(stop) else ""
            log.info(
                f"time budget of {format_duration(self.settings.time_budget)} reached{why}: "
                f"{ended}/{self.settings.max_trials} trials ended, the rest saved. "
                "Run the same command again to continue."
            )
        self.record_best_confusion()
        self.raise_if_stopped_early()
        self.warn_of_untried_points()

    def search_quietly(self) -> None:
        """KerasTuner's search loop, its prints muted, with what lasts the search frozen."""
        with compat.quiet_kerastuner(), what_lasts_frozen():
            self.search(verbose=0)

    def warn_of_untried_points(self) -> None:
        """Say which `--try` points a finished search never tried: the trials ran out first
        (a point added on a resume of a successive-halving search whose first rung was full
        waits for a slot that later rungs take)."""
        if self._is_worker() or self.ended_trials() < self.settings.max_trials:
            return
        untried = self.oracle.untried_known_points()
        if untried:
            points = "; ".join(",".join(f"{k}={v}" for k, v in p.items()) for p in untried)
            log.warning(f"not tried, the search's {self.settings.max_trials} trials ran out "
                        f"first: {points}. Run again with a larger --max-trials to try them.")

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
            completed=sum(t.status == state.COMPLETED for t in trials),
            failed=sum(t.status in state.FAILED_STATES for t in trials),
            best_trial=best[0].run.trial if best else None,
            best_val_accuracy=best[0].run.score if best else None,
        )
        ended = outcome.completed + outcome.failed
        state_line = "search done" if ended >= self.settings.max_trials else "search stopped"
        log.info(
            f"{state_line}: {outcome.completed} completed, {outcome.failed} failed; "
            f"best {self._best_line()}. See: {report_command(self.settings)}"
        )
        return outcome


@contextlib.contextmanager
def what_lasts_frozen():
    """Keep what lives as long as the search (TensorFlow's, Keras's and KerasTuner's modules:
    some 470,000 objects once imported) out of Python's garbage collection while it runs.

    A full collection walks every object the collector tracks, and each build runs two
    (KerasTuner's `_try_build` calls Keras 3's `clear_session()`, which collects, then collects
    again): 0.29 s each after the imports on the 2-core CPU, beside a training; under
    `cProfile`, 0.93 s a build for both, and 0.13 s with them frozen (README, `trial_speed.py`).
    The garbage of what ran before is collected first, so none is kept; what is alive now and
    becomes garbage during the search (a caller's own objects, say) waits for its end. A
    process that froze objects itself keeps them frozen: then nothing is done here."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    try:
        gc.freeze()
        yield
    finally:
        gc.unfreeze()


class SearchTuner(SweepTuner, kt.Tuner):
    pass


class HyperbandSearchTuner(SweepTuner, kt.Hyperband):
    pass


def make_tuner(settings: SearchSettings, space: Space, split: Split, progress=None,
               worker: str | None = None) -> SweepTuner:
    compat.check()
    task = training_task(settings)
    tuner_class = HyperbandSearchTuner if settings.tuner == "hyperband" else SearchTuner
    try:
        # KerasTuner prints "Reloading Tuner from ..."; `announce_start` says it our way.
        with contextlib.redirect_stdout(io.StringIO()):
            hypermodel = SpaceHyperModel(space, task, settings.precision)
            return tuner_class(
                oracle=make_oracle(settings, hypermodel.count_params),
                hypermodel=hypermodel,
                settings=settings,
                data=trial_module.TrainingData.from_split(split, len(CLASS_NAMES)),
                progress=progress,
                worker=worker,
            )
    except (json.JSONDecodeError, RuntimeError) as e:
        raise SweepError(
            f"Could not open the search in {settings.project_dir} ({e}). "
            "Run with --fresh to start over (the old search is kept aside)."
        ) from None


class PlanTimer(keras.callbacks.Callback):
    """Has the tuner say how long its plan takes here once an epoch after the first of this
    `fit` (which also pays for tracing) has been timed, or once a trial has ended here."""

    def __init__(self, tuner: SweepTuner):
        super().__init__()
        self.tuner = tuner
        self.epochs_seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_seen += 1
        if self.epochs_seen < 2 and not self.tuner.ended_here:
            return
        # A trial file unreadable for a moment: a progress line is not worth failing a trial.
        with contextlib.suppress(SweepError, OSError):
            self.tuner.announce_plan_time()
