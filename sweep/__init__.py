"""sweep: architecture and hyperparameter search for plain CNNs on CIFAR-10, under the rules.

    import sweep
    search = sweep.Search("small_cnn", max_trials=5, data="~/cifar10")
    search.run()
    search.trials()
"""

from sweep import backend as _backend

__version__ = "0.1.0"
__all__ = ["Search", "SweepError"]

_backend.cache_compiled_steps()


def __getattr__(name: str):
    # Imported on first use, so `python -m sweep run` does not load pandas and matplotlib.
    if name == "Search":
        from sweep.api import Search

        return Search
    if name == "SweepError":
        from sweep.errors import SweepError

        return SweepError
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
