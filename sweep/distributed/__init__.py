"""One search over several processes or machines on KerasTuner's own gRPC mode: the chief and
worker roles (`roles`, which load the engine) and the files they share (`cluster`: heartbeats,
the token, who is alive; no TensorFlow)."""
