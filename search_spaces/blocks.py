"""Plain building blocks shared by the search spaces, and the declarative plain-CNN space.

Only layers the challenge allows appear here: convolution, pooling, dense, dropout, batch
normalization, activation. No skip connections (every model is a `keras.Sequential`), no
augmentation, no pretrained weights. A space module declares a `PlainCNN` (what it may choose,
with ranges and defaults) and exposes its `build`; `sweep.engine.rules` still checks every model
built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import keras
from keras import layers

from sweep.spaces import TrainingTask

MAX_DROPOUT = 0.7  # a block's dropout, however much it grows with depth


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    default: int

    def choose(self, hp, name: str) -> int:
        if self.low == self.high:
            return hp.Fixed(name, self.low)
        return hp.Int(name, self.low, self.high, default=self.default)


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    default: float
    step: float | None = None
    log: bool = False

    def choose(self, hp, name: str) -> float:
        if self.low == self.high:
            return hp.Fixed(name, self.low)
        sampling = "log" if self.log else "linear"
        return hp.Float(name, self.low, self.high, step=self.step, sampling=sampling,
                        default=self.default)


@dataclass(frozen=True)
class Choice:
    values: tuple
    default: Any

    def choose(self, hp, name: str):
        if len(self.values) == 1:
            return hp.Fixed(name, self.values[0])
        if set(self.values) == {True, False}:
            return hp.Boolean(name, default=self.default)
        return hp.Choice(name, list(self.values), default=self.default)


def fixed(value) -> Choice:
    return Choice((value,), value)


@dataclass(frozen=True)
class SGDRates:
    """SGD's learning rate and weight decay, where a space searches them apart from Adam's."""

    learning_rate: Float
    weight_decay: Float


@dataclass(frozen=True)
class Training:
    """Training choices: optimizer, learning rate, weight decay, batch size, label smoothing.

    The learning rate warms up linearly for two epochs, then follows a cosine decay to zero at
    the end of the trial's own schedule (`--max-epochs`, or a rung's share of it): measured on
    the 5k/5k split, AdamW + warmup/cosine + label smoothing 0.1 took the plain BN CNN from the
    challenge's 66.7 % to 68.2 %.
    """

    optimizer: Choice = Choice(("adamw", "adam", "sgd"), "adamw")
    learning_rate: Float = Float(1e-4, 1e-2, 2e-3, log=True)
    weight_decay: Float = Float(1e-5, 1e-1, 0.05, log=True)
    batch_size: Choice = Choice((64, 128, 256), 128)
    label_smoothing: Float = Float(0.0, 0.3, 0.1, step=0.05)
    warmup_epochs: int = 2
    # SGD's own rate and decay, searched apart from the adaptive optimizers' where a space
    # declares them (`choose_rate_and_decay`); without, one pair serves every optimizer.
    sgd: SGDRates | None = None

    def compile(self, model: keras.Model, hp, task: TrainingTask) -> keras.Model:
        optimizer_name = self.optimizer.choose(hp, "optimizer")
        learning_rate, weight_decay = self.choose_rate_and_decay(hp, optimizer_name)
        batch_size = self.batch_size.choose(hp, "batch_size")
        label_smoothing = self.label_smoothing.choose(hp, "label_smoothing")

        steps_per_epoch = math.ceil(task.train_size / batch_size)
        warmup_epochs = min(self.warmup_epochs, max(task.epochs - 1, 0))
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_epochs else learning_rate,
            decay_steps=max(1, (task.epochs - warmup_epochs) * steps_per_epoch),
            warmup_target=learning_rate if warmup_epochs else None,
            warmup_steps=warmup_epochs * steps_per_epoch,
        )
        optimizers = {
            "sgd": lambda: keras.optimizers.SGD(
                schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay),
            "adam": lambda: keras.optimizers.Adam(schedule, weight_decay=weight_decay),
            "adamw": lambda: keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
        }
        model.compile(
            optimizer=optimizers[optimizer_name](),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
            metrics=["accuracy"],
        )
        return model

    def choose_rate_and_decay(self, hp, optimizer_name: str) -> tuple[float, float]:
        """The learning rate and weight decay, SGD's apart where the space declares its own:
        measured on the 5k/5k split (`small_cnn`'s docstring), SGD with Nesterov momentum
        underfits at Adam's rates and matches AdamW only near 0.4, with a twentieth of its
        decay (Keras scales the decay by the rate)."""
        if self.sgd is None:
            return (self.learning_rate.choose(hp, "learning_rate"),
                    self.weight_decay.choose(hp, "weight_decay"))
        # Both scopes on every build: KerasTuner learns a conditional hyperparameter from the
        # scopes a build enters, active or not (the inactive one's values are None).
        pairs = {}
        adaptive = [name for name in self.optimizer.values if name != "sgd"]
        if adaptive:
            with hp.conditional_scope("optimizer", adaptive):
                pairs["adaptive"] = (self.learning_rate.choose(hp, "learning_rate"),
                                     self.weight_decay.choose(hp, "weight_decay"))
        with hp.conditional_scope("optimizer", ["sgd"]):
            pairs["sgd"] = (self.sgd.learning_rate.choose(hp, "sgd_learning_rate"),
                            self.sgd.weight_decay.choose(hp, "sgd_weight_decay"))
        return pairs["sgd" if optimizer_name == "sgd" else "adaptive"]


def conv_block(filters: int, convs: int, kernel_size: int, activation: str, batch_norm: bool,
               bn_momentum: float, pooling: str, dropout: float) -> list[layers.Layer]:
    """`convs` x (conv [-> BN] -> activation), then 2x2 pooling and dropout."""
    block: list[layers.Layer] = []
    for _ in range(convs):
        # The bias is redundant when BatchNormalization follows (its beta does the same job).
        block.append(layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm))
        if batch_norm:
            block.append(layers.BatchNormalization(momentum=bn_momentum))
        block.append(layers.Activation(activation))
    block.append(layers.MaxPooling2D(2) if pooling == "max" else layers.AveragePooling2D(2))
    if dropout > 0:
        block.append(layers.Dropout(dropout))
    return block


def classifier_head(kind: str, pooled_dropout: float, dense_units: list[int], dropout: float,
                    activation: str, num_classes: int) -> list[layers.Layer]:
    """Flatten or global average pooling [-> dropout], optional dense layers, then the softmax
    classifier."""
    head: list[layers.Layer] = [
        layers.GlobalAveragePooling2D() if kind == "gap" else layers.Flatten()
    ]
    if pooled_dropout > 0:
        head.append(layers.Dropout(pooled_dropout))
    for units in dense_units:
        head.append(layers.Dense(units, activation=activation))
        if dropout > 0:
            head.append(layers.Dropout(dropout))
    # float32 under mixed precision too: the softmax, the loss and the metrics stay exact.
    head.append(layers.Dense(num_classes, activation="softmax", dtype="float32"))
    return head


@dataclass(frozen=True)
class PlainCNN:
    """A space of VGG-style plain CNNs: conv blocks whose width doubles per block, then a head.

    Each field is what the space may choose (a range or choices, with the default point).
    """

    name: str
    conv_blocks: Int
    filters: Choice
    convs_per_block: Int
    max_filters: int = 256
    kernel_size: Choice = Choice((3, 5), 3)
    activation: Choice = Choice(("relu", "elu", "gelu", "swish"), "relu")
    batch_norm: Choice = Choice((True, False), True)
    # 0.9 rather than Keras's 0.99: with 40 steps an epoch on 5,000 images, 0.99 keeps
    # inference statistics epochs behind the weights and makes validation accuracy noisy.
    # A number is fixed, not a hyperparameter; a `Float` makes it one.
    bn_momentum: Float | float = 0.9
    pooling: Choice = Choice(("max", "average"), "max")
    block_dropout: Float = Float(0.0, 0.5, 0.25, step=0.05)
    # Added to the dropout at each deeper block: deeper, wider blocks overfit more.
    dropout_growth: Float = Float(0.0, 0.0, 0.0)
    head: Choice = Choice(("gap", "flatten"), "gap")
    dense_layers: Int = Int(0, 2, 0)
    dense_units: Choice = Choice((64, 128, 256, 512), 128)
    dense_dropout: Float = Float(0.0, 0.5, 0.3, step=0.1)
    head_dropout: Float = Float(0.0, 0.0, 0.0)  # on the pooled features, before any dense layer
    training: Training = field(default_factory=Training)

    def build(self, hp, task: TrainingTask) -> keras.Model:
        blocks = self.conv_blocks.choose(hp, "conv_blocks")
        base_filters = self.filters.choose(hp, "filters")
        convs = self.convs_per_block.choose(hp, "convs_per_block")
        kernel_size = self.kernel_size.choose(hp, "kernel_size")
        activation = self.activation.choose(hp, "activation")
        batch_norm = self.batch_norm.choose(hp, "batch_norm")
        pooling = self.pooling.choose(hp, "pooling")
        bn_momentum = self.bn_momentum
        if hasattr(bn_momentum, "choose"):  # searched, where BatchNormalization is used
            with hp.conditional_scope("batch_norm", [True]):
                bn_momentum = bn_momentum.choose(hp, "bn_momentum")
        block_dropout = self.block_dropout.choose(hp, "block_dropout")
        dropout_growth = self.dropout_growth.choose(hp, "dropout_growth")
        head = self.head.choose(hp, "head")
        head_dropout = self.head_dropout.choose(hp, "head_dropout")
        dense_layers = self.dense_layers.choose(hp, "dense_layers")
        dense_units, dense_dropout = [], 0.0
        if self.dense_layers.high:
            # Entered on every build, as SGD's pair: KerasTuner learns the dense layers' width
            # and dropout from any build, not only after a trial with dense layers.
            with hp.conditional_scope("dense_layers", list(range(1, self.dense_layers.high + 1))):
                units = self.dense_units.choose(hp, "dense_units")
                dropout = self.dense_dropout.choose(hp, "dense_dropout")
            if dense_layers:
                dense_units, dense_dropout = [units] * dense_layers, dropout

        model = keras.Sequential([keras.Input(task.input_shape)], name=self.name)
        for i in range(blocks):
            filters = min(base_filters * 2**i, self.max_filters)
            dropout = min(block_dropout + i * dropout_growth, MAX_DROPOUT)
            for layer in conv_block(filters, convs, kernel_size, activation, batch_norm,
                                    bn_momentum, pooling, dropout):
                model.add(layer)
        for layer in classifier_head(head, head_dropout, dense_units, dense_dropout, activation,
                                     task.num_classes):
            model.add(layer)
        return self.training.compile(model, hp, task)
