"""KerasTuner oracles made for this tool: the default point first, crash-safe bookkeeping,
successive halving, and finalists retrained with more seeds."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import keras_tuner as kt
from keras_tuner.engine import trial as kt_trial

from sweep import ranking, state
from sweep.settings import SearchSettings

# KerasTuner aborts after this many failed trials in a row; a space that always fails is a bug.
MAX_CONSECUTIVE_FAILURES = 3
MAX_DRAWS = 100  # configurations drawn for one trial before --max-params stops the search
HYPERBAND_ITERATIONS = 1000  # in effect unlimited: --max-trials ends a Hyperband search
HALVING_FACTOR = 3  # successive halving keeps the best third of a rung, at 3x its epochs
# Bayesian search's random start, as a share of --max-trials (and at least 3 trials).
BAYESIAN_RANDOM_SHARE = 4


def default_values(space: kt.HyperParameters, overrides: dict | None = None) -> dict:
    """The default point of a space (each active hyperparameter at its default), or the point
    `overrides` names: those values, the other active hyperparameters at their defaults."""
    hps = kt.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = (overrides or {}).get(hp.name, hp.default)
    return hps.values


class DefaultFirst:
    """Oracle mixin: the space's default point is the first trial of every search, then the
    known points (`--try`), no configuration is proposed twice, and none over `--max-params`.

    KerasTuner starts with a random point; a space's default is the model its author measured,
    so trying it first gives every search a known-good baseline from its first trial on; a user
    who read a paper starts from its configuration. They come where the tuner draws a new
    configuration (a first rung, a random draw) and before any Gaussian-process proposal
    (`ModelProposals`), so every tuner tries them, points added on a resume too.

    A configuration whose model is over `--max-params` is skipped there, before it becomes a
    trial, and another is drawn: it is neither a failure nor counted in `--max-trials`
    (KerasTuner would count it as a failed trial and, after three, stop: keras-tuner #175, #989).
    Each skipped configuration is an event of the search, for the report.
    """

    known_points: list[dict] = []
    max_params: float | None = None
    count_params = None  # hyperparameters -> parameters of their model; set with max_params
    params_seen: dict[str, int]  # configuration -> parameters, as counted by this process
    events_dir: Path | None = None  # where skipped configurations are recorded

    def _untried(self, points: list[dict]):
        """(point, its values) for each of `points` not tried yet and within --max-params."""
        for point in points:
            values = default_values(self.hyperparameters, point)
            if not self._duplicate(values) and self.within_max_params(values):
                yield point, values

    def _untried_known_point(self) -> dict | None:
        """The default point, then each known point: the first not tried yet and within
        --max-params."""
        return next((values for _, values in self._untried([{}, *self.known_points])), None)

    def untried_known_points(self) -> list[dict]:
        """The known points not tried yet (within --max-params), as given."""
        return [point for point, _ in self._untried(self.known_points)]

    def _random_values(self):
        values = self._untried_known_point()
        if values is not None:
            return values
        for _ in range(MAX_DRAWS):
            values = super()._random_values()
            if values is None or self.within_max_params(values):
                return values
        self.stop_reason = (f"no new configuration has at most --max-params {self.max_params:g} "
                            f"parameters in {MAX_DRAWS} draws")
        return None

    def within_max_params(self, values: dict) -> bool:
        """Whether the model of `values` is within --max-params; a configuration over it is
        recorded as skipped the first time this process sees it."""
        if self.max_params is None:
            return True
        key, seen = ranking.config_key(values), self.params_seen
        if key not in seen:
            hp = self.hyperparameters.copy()
            hp.values = dict(values)
            seen[key] = self.count_params(hp)
            if seen[key] > self.max_params:
                state.append_event(self.events_dir, event=state.SKIPPED_EVENT, params=seen[key],
                                   values=ranking.config_of(values))
        return seen[key] <= self.max_params

    def _duplicate(self, values):
        """Tried before, as a configuration: KerasTuner's own check hashes the tuner's
        bookkeeping values too, so a configuration tried on a rung would look new. A
        hyperparameter the space gained after a trial counts at its default there, as
        KerasTuner's Gaussian process counts it, or the default point would look new again."""
        def key(trial_values):
            return ranking.config_key(default_values(self.hyperparameters, trial_values))

        return key(values) in {key(t.hyperparameters.values) for t in self.trials.values()}


class TrialCount(int):
    """`--max-trials` as the oracle holds it, printed at least `id_width` digits wide.

    KerasTuner pads each new trial's id to the digits of the oracle's `max_trials` as it
    prints: a search made for 14 trials and resumed with 6 named its next trial `4`, after
    `03`, and `--trial 04` found nothing. Printed at the width of the ids already made, the
    count keeps them one width. A count with more digits (an extension past 99, or from 6 to
    14) still widens the new ones, so trials are ordered by number, not name
    (`ranking.trial_number`). Formatted, the count prints padded too (`06`)."""

    id_width: int

    def __new__(cls, count: int, id_width: int):
        made = super().__new__(cls, count)
        made.id_width = id_width
        return made

    def __str__(self) -> str:
        return f"{int(self):0{self.id_width}d}"

    def __getnewargs__(self) -> tuple[int, int]:  # so that copy and pickle can remake it
        return int(self), self.id_width


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
    - Trial ids keep the width of those already made when a resume changes `--max-trials`
      (`TrialCount`).
    """

    stop_reason: str | None = None  # why the search stopped early, for the user
    exhausted = False  # KerasTuner answered STOPPED: the space or Hyperband's brackets ran out

    def save(self):
        state.write_kerastuner_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = Path(self._get_trial_dir(trial.trial_id)) / state.TRIAL_FILE
        state.write_kerastuner_json(path, trial.get_state())

    def reload(self):
        super().reload()
        self._retry_queue = [t for t in self._retry_queue
                             if self.trials[t].status not in state.ENDED]

    @kt.synchronized
    def create_trial(self, tuner_id):
        if self.stop_reason:
            self.tuner_ids.discard(tuner_id)
            return kt_trial.Trial(self.get_space(), status=state.STOPPED)
        if self.trials:
            self.max_trials = TrialCount(self.max_trials, max(map(len, self.trials)))
        trial = super().create_trial(tuner_id)
        if trial.status != state.STOPPED:
            return trial
        self.exhausted = True
        if self.ongoing_trials or self._retry_queue:
            # Another worker's trial may still come back to the queue (`release_trial`): this
            # worker must stay to train it, not exit.
            self.tuner_ids.add(tuner_id)
            return kt_trial.Trial(self.get_space(), status=state.IDLE)
        return trial

    @kt.synchronized
    def end_trial(self, trial):
        ongoing = {t.trial_id for t in self.ongoing_trials.values()}
        if trial.trial_id not in ongoing and self.trials[trial.trial_id].status in state.ENDED:
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
    return [ranking.Run(t.trial_id, t.hyperparameters.values, t.status == state.COMPLETED, t.score)
            for t in trials]


def searched_trials(trials) -> list:
    """The trials a search proposed: all but finalists' seeds."""
    return [t for t in trials if ranking.REPLICA_KEY not in t.hyperparameters.values]


def finalist_keys(trials, finalists: int, max_epochs: int) -> list[str]:
    """The `config_key`s of the best `finalists` fully trained configurations, best first, by
    the score of their searched trial: their seeds do not move them (the report ranks
    configurations with more seeds first, which would keep an extended search's former
    finalists ahead of any configuration it finds)."""
    chosen: list[str] = []
    for ranked in ranking.rank(runs_of(searched_trials(trials)), max_epochs):
        key = ranking.config_key(ranked.run.values)
        if key not in chosen:
            chosen.append(key)
    return chosen[:finalists]


def planned_searches(trials, max_trials: int, finalists: int, max_epochs: int) -> int:
    """The trials a search plans to propose: all but its finalists' seeds, and but the seeds
    already run on configurations no longer among the finalists (a search extended with a
    larger --max-trials found better ones)."""
    current = set(finalist_keys(trials, finalists, max_epochs))
    stale = sum(1 for t in trials if ranking.REPLICA_KEY in t.hyperparameters.values
                and ranking.config_key(t.hyperparameters.values) not in current)
    return max_trials - ranking.REPLICAS * finalists - stale


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

    def _searched(self) -> list:
        return searched_trials(self.trials.values())

    def search_slots(self) -> int:
        """The trials the search's oracle proposes before the finalists' seeds: every slot but
        those seeds and the seeds already run, and at least those it has proposed. A search
        extended with a larger --max-trials after its finalists were reseeded keeps their seeds
        and keeps room for the seeds of a better configuration it may find."""
        searched = len(self._searched())
        seeds_run = len(self.trials) - searched
        return max(searched, self.max_trials - ranking.REPLICAS * self.finalists - seeds_run)

    def plan_slots(self) -> int:
        """The slots a search's plan (halving's rungs) is laid out over (`planned_searches`):
        unlike `search_slots`, it does not grow when slots come back to the search (too few
        fully trained configurations to reseed), which then go up the plan's rungs."""
        return planned_searches(self.trials.values(), self.max_trials, self.finalists,
                                self.max_epochs)

    def _finalist_keys(self) -> list[str]:
        return finalist_keys(self.trials.values(), self.finalists, self.max_epochs)

    def _next_replica(self) -> dict | None:
        done = {(ranking.config_key(t.hyperparameters.values),
                 t.hyperparameters.values.get(ranking.REPLICA_KEY))
                for t in self.trials.values()}
        for key in self._finalist_keys():
            for replica in range(1, ranking.REPLICAS + 1):
                if (key, replica) not in done:
                    values = {**json.loads(key), ranking.REPLICA_KEY: replica}
                    if self.max_epochs:
                        values[ranking.EPOCHS_KEY] = self.max_epochs
                    return values
        return None

    def populate_space(self, trial_id):
        searched = self._searched()
        if len(searched) < self.search_slots():
            response = super().populate_space(trial_id)
            if response["status"] != kt_trial.TrialStatus.STOPPED:
                return response  # else the search's oracle ran out early: finalists now
        if self._awaited(searched):
            return IDLE  # finalists are chosen once every searched trial has its score
        replica = self._next_replica()
        return _running(replica) if replica else super().populate_space(trial_id)


MIN_HALVING_SLOTS = 5  # 3 configurations screened, 2 on all the epochs
# Configurations the last rung trains on the whole schedule, at least: the best the screening
# found and the space's default point (`HalvingOracle._is_default`).
MIN_FULLY_TRAINED = 2


def halving_plan(slots: int, finalists: int, max_epochs: int) -> list[tuple[int, int]]:
    """(configurations, epochs) per rung: n on a ninth of `max_epochs`, n/3 on a third, n/9 (at
    least `finalists` and MIN_FULLY_TRAINED) on all of it, with the largest n that fits `slots`
    trials; slots left over add configurations to the first rung. A middle rung no narrower
    than the last would promote everything it trained, so then the plan has two rungs: the
    first, and the last; so it has when the middle rung's epochs round to the first's or the
    last's (rungs are told apart by their epochs). Under MIN_HALVING_SLOTS, or when a ninth of
    `max_epochs` rounds to all of it, there is nothing to halve: every trial trains on all the
    epochs."""
    epochs = [max(1, round(max_epochs / HALVING_FACTOR**2)),
              max(1, round(max_epochs / HALVING_FACTOR)), max_epochs]
    if slots < MIN_HALVING_SLOTS or epochs[0] == max_epochs:
        return [(max(slots, 1), max_epochs)]

    def sizes(n: int) -> list[int]:
        return [n, math.ceil(n / HALVING_FACTOR),
                max(math.ceil(n / HALVING_FACTOR**2), finalists, MIN_FULLY_TRAINED)]

    n = 1
    while sum(sizes(n + 1)) <= slots:
        n += 1
    planned = sizes(n)
    if planned[1] <= planned[2] or epochs[1] in (epochs[0], epochs[2]):
        planned, epochs = [planned[0], planned[2]], [epochs[0], epochs[2]]
    planned[0] += slots - sum(planned)
    return list(zip(planned, epochs, strict=True))


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class HalvingOracle(kt.oracles.RandomSearchOracle):
    """Successive halving with restarts: the default tuner.

    Rung 0 trains many configurations (the space's default point first) on a ninth of
    `--max-epochs`, rung 1 the best third of them on a third, rung 2 the best of those on the
    whole schedule (a small search has the first and the last only); the default point is on
    every rung. Every trial trains from scratch on a learning-rate schedule that ends with its
    own epochs, so a short trial is scored on a finished schedule, not halfway up a long one
    (what KerasTuner's Hyperband does by continuing trials). A rung is promoted once it has
    ended. Rung sizes come from the trial slots before the finalists (`halving_plan`).
    """

    def _schedule(self, trial) -> int:
        return ranking.trial_epochs(trial.hyperparameters.values, self.max_epochs)

    def populate_space(self, trial_id):
        plan = halving_plan(self.plan_slots(), self.finalists, self.max_epochs)
        sizes, epochs = [n for n, _ in plan], [e for _, e in plan]
        searched = self._searched()
        on_rung = [[t for t in searched if self._schedule(t) == e] for e in epochs]
        reached = [{ranking.config_key(t.hyperparameters.values) for t in searched
                    if self._schedule(t) >= e} for e in epochs]
        if len(reached[0]) < sizes[0]:
            values = self._random_values()
            if values is not None:
                return _running({**values, ranking.EPOCHS_KEY: epochs[0]})
        for rung in range(1, len(sizes)):
            if len(reached[rung]) >= sizes[rung]:
                continue
            if self._awaited(on_rung[rung - 1]):
                return IDLE  # a rung is promoted once all of it has a score
            candidates = self._candidates(on_rung[rung - 1], reached[rung])
            if len(reached[rung]) == sizes[rung] - 1:
                candidates = [t for t in candidates if self._is_default(t)] or candidates
            if candidates:
                return self._promote(candidates[0], epochs[rung])
        return self._beyond_plan(on_rung, reached, epochs)

    def _is_default(self, trial) -> bool:
        """The space's default point: it goes on to every rung (in its last slot if its score
        did not earn one), so it is always trained on the whole schedule. Short schedules rank
        nets by how fast they start, and the default point is the model its author measured at
        full length: in the default command's first run on a bfloat16 CPU, a net without batch
        normalisation beat it on 13 epochs (61.5 % against 60.4 %) and ended at 61 % on 40,
        where the default point reaches 70 %. The search cannot end below it."""
        default = ranking.config_key(default_values(self.hyperparameters))
        return ranking.config_key(trial.hyperparameters.values) == default

    def _candidates(self, below: list, taken: set[str]) -> list:
        """Completed trials of a rung whose configuration (`config_key`) is not among those
        `taken` to the next, best first."""
        return sorted(
            (t for t in below if t.status == state.COMPLETED and t.score is not None
             and ranking.config_key(t.hyperparameters.values) not in taken),
            key=lambda t: t.score, reverse=True)

    def _promote(self, trial, epochs: int) -> dict:
        values = ranking.config_of(trial.hyperparameters.values)
        return _running({**values, ranking.EPOCHS_KEY: epochs})

    def _beyond_plan(self, on_rung: list[list], reached: list[set], epochs: list[int]) -> dict:
        """Slots the plan leaves (fewer finalists than planned, or a small --max-trials): the
        next-best configuration goes up a rung, the highest first; else a new configuration."""
        for rung in range(len(on_rung) - 1, 0, -1):
            candidates = self._candidates(on_rung[rung - 1], reached[rung])
            if candidates:
                return self._promote(candidates[0], epochs[rung])
        values = self._random_values()
        if values is None:
            return STOPPED
        return _running({**values, ranking.EPOCHS_KEY: epochs[0]})


class RandomOracle(DefaultFirst, SafeOracle, Finalists, kt.oracles.RandomSearchOracle):
    pass


class ModelProposals:
    """Oracle mixin, under `Finalists`: guards around the Gaussian process of KerasTuner's
    Bayesian search, which proposes without `_random_values`.

    - The default and known points not tried yet come first, before any proposal.
    - A proposal tried before, or over --max-params, gives way to a random configuration (the
      process's choices and integers round to points it has seen, and a repeat would spend a
      trial to learn nothing).
    - Only trials with a score of their own shape the process: KerasTuner scores the completed
      ones and imagines the ongoing ones (not after the space grew: see `_vectorize_trials`),
      but would give a trial found in neither state (one a killed process left RUNNING, never
      queued again: `Finalists._awaited`) no score, or the previous trial's.
    - scikit-learn's warnings about fitting a few trials are not the user's to act on, and stay
      out of the search's output.
    """

    def populate_space(self, trial_id):
        from sklearn.exceptions import ConvergenceWarning

        known = self._untried_known_point()
        if known is not None:
            return _running(known)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            response = super().populate_space(trial_id)
        values = response.get("values")
        if response["status"] != kt_trial.TrialStatus.RUNNING or (
                not self._duplicate(values) and self.within_max_params(values)):
            return response
        values = self._random_values()
        return _running(values) if values is not None else STOPPED

    def _vectorize_trials(self):
        everything = self.trials
        ongoing = set(self.ongoing_trials.values())
        fitted = getattr(self.gpr, "n_features_in_", None)
        if fitted not in (None, len(self._nonfixed_space())):
            # KerasTuner imagines the ongoing trials' scores with the last fit, which a space
            # grown since (a hyperparameter a trial registered) no longer fits: it would raise
            # with the oracle's lock held, and a distributed chief would hang.
            ongoing = set()
        self.trials = {trial_id: trial for trial_id, trial in everything.items()
                       if trial.status in state.ENDED or trial in ongoing}
        try:
            return super()._vectorize_trials()
        finally:
            self.trials = everything


class BayesianOracle(DefaultFirst, SafeOracle, Finalists, ModelProposals,
                     kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(DefaultFirst, SafeOracle, Finalists, kt.oracles.HyperbandOracle):
    pass


class SuccessiveHalvingOracle(DefaultFirst, SafeOracle, Finalists, HalvingOracle):
    pass


def bayesian_random_start(max_trials: int) -> int:
    """Completed trials (the default and known points included) before the Gaussian process
    proposes: a quarter of the `--max-trials` a search is made with (KerasTuner keeps it in the
    search's state). KerasTuner's own start, 3 per hyperparameter (66 for `large_cnn`),
    outlasts the tens of trials a CPU affords, so its Bayesian search would be random search
    throughout; Optuna and scikit-optimize start with 10."""
    return max(3, max_trials // BAYESIAN_RANDOM_SHARE)


def make_oracle(settings: SearchSettings, count_params=None) -> Finalists:
    """The oracle of `settings.tuner`; `count_params` (hyperparameters -> parameters of their
    model) is needed with --max-params."""
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
        if settings.tuner == "bayesian":
            common["num_initial_points"] = bayesian_random_start(settings.max_trials)
        oracle = oracle_class(max_trials=settings.max_trials, **common)
    oracle.max_epochs = settings.max_epochs
    oracle.known_points = settings.known_points
    oracle.max_params, oracle.count_params = settings.max_params, count_params
    oracle.events_dir, oracle.params_seen = settings.project_dir, {}
    oracle.finalists = settings.finalists_used
    return oracle

