"""Built-in search spaces, one small module each; `blocks` holds the plain layers they share.

A space module defines `DESCRIPTION` (one line) and `build(hp, task) -> keras.Model`, a compiled
model built from KerasTuner hyperparameters. It must register `batch_size` (via
`blocks.Training.compile`), which the trial reads to feed the data.
"""
