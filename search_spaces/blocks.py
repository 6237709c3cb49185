"""Plain building blocks shared by the search spaces: conv blocks, heads, training choices.

Only layers the challenge allows appear here: convolution, pooling, dense, dropout, batch
normalization, activation. No skip connections (every model is a `keras.Sequential`), no
augmentation, no pretrained weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class TrainingTask:
    """What a space needs to know about the data and budget to build and compile a model."""

    input_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    epochs: int


def conv_block(
    filters: int,
    convs: int,
    kernel_size: int,
    activation: str,
    batch_norm: bool,
    pooling: str,
    dropout: float,
) -> list[layers.Layer]:
    """`convs` x (conv [-> BN] -> activation), then 2x2 pooling and dropout."""
    block: list[layers.Layer] = []
    for _ in range(convs):
        # The bias is redundant when BatchNormalization follows (its beta does the same job).
        block.append(
            layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm)
        )
        if batch_norm:
            block.append(layers.BatchNormalization())
        block.append(layers.Activation(activation))
    block.append(layers.MaxPooling2D(2) if pooling == "max" else layers.AveragePooling2D(2))
    if dropout > 0:
        block.append(layers.Dropout(dropout))
    return block


def classifier_head(
    kind: str, dense_units: list[int], dropout: float, activation: str, num_classes: int
) -> list[layers.Layer]:
    """Flatten or global average pooling, optional dense layers, then the softmax classifier."""
    head: list[layers.Layer] = [
        layers.GlobalAveragePooling2D() if kind == "gap" else layers.Flatten()
    ]
    for units in dense_units:
        head.append(layers.Dense(units, activation=activation))
        if dropout > 0:
            head.append(layers.Dropout(dropout))
    head.append(layers.Dense(num_classes, activation="softmax"))
    return head


def compile_for_training(model: keras.Model, hp, task: TrainingTask) -> keras.Model:
    """Register the training choices (optimizer, schedule, regularization, batch size) and compile.

    The learning rate warms up linearly for the first epochs, then follows a cosine decay to
    zero at the search's `max_epochs`: measured on the 5k/5k split, AdamW + warmup/cosine +
    label smoothing 0.1 took the plain BN CNN from the challenge's 66.7 % to 68.2 %.
    """
    optimizer_name = hp.Choice("optimizer", ["adamw", "adam", "sgd"], default="adamw")
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=2e-3)
    weight_decay = hp.Float("weight_decay", 1e-5, 1e-1, sampling="log", default=0.05)
    batch_size = hp.Choice("batch_size", [64, 128, 256], default=128)
    label_smoothing = hp.Float("label_smoothing", 0.0, 0.2, step=0.05, default=0.1)

    steps_per_epoch = math.ceil(task.train_size / batch_size)
    warmup_epochs = min(2, max(task.epochs - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_epochs else learning_rate,
        decay_steps=max(1, (task.epochs - warmup_epochs) * steps_per_epoch),
        warmup_target=learning_rate if warmup_epochs else None,
        warmup_steps=warmup_epochs * steps_per_epoch,
    )
    if optimizer_name == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    elif optimizer_name == "adam":
        optimizer = keras.optimizers.Adam(schedule, weight_decay=weight_decay)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    return model
