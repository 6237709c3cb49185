"""The challenge's model rules, checked on every built model before it trains.

The checker walks the built Keras model; it never trusts a space's promises. Allowed: plain
layers (convolution, pooling, dense, dropout, flatten / global pooling, batch / layer / group
normalization, activations, input rescaling or normalization), in a purely sequential graph.
Refused, each with its own rule: merge layers (skip or dense connections), nested models
(`keras.applications` and other pretrained or named architectures), layers that change
their input at training time other than Dropout (augmentation and noise), and activations
other than Keras's own (a custom function in `activation=` could flip or noise its input).
"""

from __future__ import annotations

import keras
from keras import layers

from sweep.engine.compat import BaseImagePreprocessingLayer, Merge
from sweep.errors import SweepError

PLAIN_LAYERS = (
    layers.InputLayer,
    layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D,
    layers.MaxPooling2D, layers.AveragePooling2D,
    layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D, layers.Flatten,
    layers.Dense, layers.Dropout, layers.SpatialDropout2D,
    layers.BatchNormalization, layers.LayerNormalization, layers.GroupNormalization,
    layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU, layers.Softmax,
    layers.Rescaling, layers.Normalization,
)
# Layers that alter images (or add noise) while training: augmentation in all but name.
AUGMENTING_LAYERS = (
    BaseImagePreprocessingLayer, layers.GaussianNoise, layers.GaussianDropout, layers.AlphaDropout,
)

NO_SKIP = "no skip or dense connections (merge layers such as Add or Concatenate)"
NO_NESTED = "no nested models (keras.applications, pretrained or named architectures)"
NO_AUGMENTATION = "no data augmentation (no layer may change its input while training)"
PLAIN_ONLY = "plain layers only (convolution, pooling, dense, dropout, normalization, activation)"
SEQUENTIAL = "a purely sequential graph (one input and one output per layer)"
KERAS_ACTIVATIONS = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish",
    "mish", "hard_silu", "hard_swish", "sigmoid", "hard_sigmoid", "log_sigmoid", "tanh",
    "hard_tanh", "softplus", "softsign", "squareplus", "softmax", "log_softmax",
)
NAMED_ACTIVATION = f"Keras's own activations only ({', '.join(KERAS_ACTIVATIONS)})"
# The functions those names are in this Keras (some came in 3.7), as a layer holds them: a
# list, since a function's identity is what counts, not its name, which a custom one could copy.
ACTIVATION_FUNCTIONS = [getattr(keras.activations, name) for name in KERAS_ACTIVATIONS
                        if hasattr(keras.activations, name)]


class RuleViolation(SweepError):
    """A model breaks one of the challenge's rules."""


def _violation(layer, rule: str) -> RuleViolation:
    return RuleViolation(f"layer {layer.name!r} ({type(layer).__name__}) breaks the rule: {rule}")


def _layer_rule(layer) -> str | None:
    """The rule `layer` breaks by its kind, or None. Exact classes only: a subclass of an allowed
    layer can do anything in `call`."""
    if isinstance(layer, keras.Model):
        return NO_NESTED
    if isinstance(layer, Merge):
        return NO_SKIP
    if isinstance(layer, AUGMENTING_LAYERS):
        return NO_AUGMENTATION
    if type(layer) not in PLAIN_LAYERS:
        return PLAIN_ONLY
    if hasattr(layer, "activation") and layer.activation not in ACTIVATION_FUNCTIONS:
        return NAMED_ACTIVATION
    return None


def _check_graph(model) -> None:
    """Walk the model's own graph (a Sequential's is the Functional it builds): every node
    takes one input tensor, and no layer is called twice within the model."""
    graph = getattr(model, "_functional", None) or model
    if not hasattr(graph, "_nodes_by_depth"):
        raise RuleViolation(
            f"model {model.name!r} is not built: start it with keras.Input(shape) so its "
            "layers can be checked"
        )
    calls: dict[int, int] = {}
    for nodes in graph._nodes_by_depth.values():
        for node in nodes:
            layer = node.operation
            if len(node.input_tensors) > 1:
                raise _violation(layer, SEQUENTIAL)
            calls[id(layer)] = calls.get(id(layer), 0) + 1
            if calls[id(layer)] > 1:
                raise _violation(layer, SEQUENTIAL + "; this layer is used more than once")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise RuleViolation(f"model {model.name!r} breaks the rule: {SEQUENTIAL}")


def check_model(model) -> None:
    """Raise `RuleViolation` naming the first layer of `model` that breaks a rule."""
    if not isinstance(model, keras.Model):
        raise RuleViolation(f"the space built {type(model).__name__}, not a Keras model")
    for layer in model.layers:
        rule = _layer_rule(layer)
        if rule:
            raise _violation(layer, rule)
    _check_graph(model)
