"""The search itself, on KerasTuner: oracles, tuner, the model a space builds, one trial, the
rules. Importing it loads TensorFlow (or the chosen Keras backend), so `sweep.search` imports it
only after its quick checks; nothing outside `sweep.engine.compat` touches KerasTuner's or Keras's
internals."""
