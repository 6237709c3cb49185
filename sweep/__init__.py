"""sweep: architecture and hyperparameter search for plain CNNs on CIFAR-10, under the rules."""

__version__ = "0.1.0"
