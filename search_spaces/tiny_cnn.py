"""tiny_cnn: one or two narrow conv blocks; a trial takes seconds on a CPU.

For smoke runs, demos and tests of the tool itself, not for accuracy.
"""

from search_spaces.blocks import Choice, Float, Int, PlainCNN, Training, fixed

DESCRIPTION = "Tiny plain CNNs (1-2 blocks of 8-16 filters): seconds per trial, for smoke runs."

SPACE = PlainCNN(
    name="tiny_cnn",
    conv_blocks=Int(1, 2, default=2),
    filters=Choice((8, 16), default=16),
    convs_per_block=Int(1, 1, default=1),
    max_filters=32,
    kernel_size=fixed(3),
    activation=Choice(("relu", "gelu"), "relu"),
    block_dropout=Float(0.0, 0.3, 0.1, step=0.1),
    head=Choice(("gap", "flatten"), "flatten"),
    dense_layers=Int(0, 1, default=0),
    dense_units=Choice((32, 64), 64),
    training=Training(
        optimizer=fixed("adamw"),
        learning_rate=Float(1e-3, 1e-2, 3e-3, log=True),
        batch_size=Choice((128, 256), 256),
    ),
)
build = SPACE.build
