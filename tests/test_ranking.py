"""`sweep.ranking`: which trials count as results, and their order (no TensorFlow)."""

from sweep import ranking
from sweep.ranking import Run


def _run(trial, lr, score, epochs=None, replica=None, completed=True):
    values = {"learning_rate": lr}
    if epochs is not None:
        values[ranking.EPOCHS_KEY] = epochs
    if replica is not None:
        values[ranking.REPLICA_KEY] = replica
    return Run(trial, values, completed, score)


def test_configurations_with_more_seeds_come_first_then_by_their_mean():
    runs = [
        _run("0", 0.1, 0.70),  # one lucky seed
        _run("1", 0.2, 0.68), _run("2", 0.2, 0.66, replica=1), _run("3", 0.2, 0.67, replica=2),
        _run("4", 0.3, 0.60), _run("5", 0.3, 0.64, replica=1), _run("6", 0.3, 0.62, replica=2),
    ]
    ranked = ranking.rank(runs, max_epochs=10)
    assert [r.run.trial for r in ranked] == ["1", "3", "2", "5", "6", "4", "0"]
    assert [r.rank for r in ranked] == list(range(1, 8))
    assert ranked[0].seeds == 3 and abs(ranked[0].mean - 0.67) < 1e-9
    assert abs(ranked[0].std - 0.01) < 1e-9 and ranked[-1].seeds == 1 and ranked[-1].std == 0


def test_only_completed_runs_on_the_whole_schedule_are_results():
    runs = [_run("0", 0.1, 0.9, epochs=3), _run("1", 0.2, 0.5, epochs=10),
            _run("2", 0.3, 0.95, completed=False), _run("3", 0.4, float("nan"))]
    assert [r.run.trial for r in ranking.rank(runs, max_epochs=10)] == ["1"]
    assert ranking.best_unfinished(runs, max_epochs=10).trial == "0"


def test_a_trials_schedule_and_configuration_ignore_the_tuners_bookkeeping():
    values = {"learning_rate": 0.1, "tuner/epochs": 4, "tuner/rung": 0}
    assert ranking.trial_epochs(values, 35) == 4 and ranking.trial_epochs({}, 35) == 35
    assert ranking.config_key(values) == ranking.config_key({"learning_rate": 0.1,
                                                             "tuner/replica": 2})


def test_finalists_take_at_most_two_trials_of_every_five():
    assert [ranking.finalists_for(t, 2) for t in (4, 5, 9, 10, 20)] == [0, 1, 1, 2, 2]
