"""small_cnn: plain VGG-style stacks of conv blocks, searched in depth, width and training.

Default point (trial 0 of every search): 3 blocks of 2 conv-BN-ReLU (32/64/128 filters), max
pooling and dropout 0.25 after each block, global average pooling, AdamW (lr 2e-3, weight decay
0.05), warmup + cosine to the search's max epochs, label smoothing 0.1, batch 128. Measured in
the challenge: 68.2 % validation accuracy on the 5k/5k split in 35 epochs, versus 66.7 % by hand.
"""

import keras

from search_spaces import blocks

DESCRIPTION = "Plain conv-block CNNs (2-4 blocks, 16-64 base filters) with training choices."

MAX_FILTERS = 256  # width doubles per block; the cap keeps 4-block models CPU-sized


def build(hp, task: blocks.TrainingTask) -> keras.Model:
    conv_blocks = hp.Int("conv_blocks", 2, 4, default=3)
    base_filters = hp.Choice("filters", [16, 32, 48, 64], default=32)
    convs = hp.Int("convs_per_block", 1, 3, default=2)
    kernel_size = hp.Choice("kernel_size", [3, 5], default=3)
    activation = hp.Choice("activation", ["relu", "elu", "gelu", "swish"], default="relu")
    batch_norm = hp.Boolean("batch_norm", default=True)
    pooling = hp.Choice("pooling", ["max", "average"], default="max")
    block_dropout = hp.Float("block_dropout", 0.0, 0.5, step=0.05, default=0.25)
    head = hp.Choice("head", ["gap", "flatten"], default="gap")
    dense_layers = hp.Int("dense_layers", 0, 2, default=0)
    dense_units, dense_dropout = [], 0.0
    if dense_layers:
        with hp.conditional_scope("dense_layers", [1, 2]):
            units = hp.Choice("dense_units", [64, 128, 256, 512], default=128)
            dense_dropout = hp.Float("dense_dropout", 0.0, 0.5, step=0.1, default=0.3)
        dense_units = [units] * dense_layers

    model = keras.Sequential([keras.Input(task.input_shape)], name="small_cnn")
    for i in range(conv_blocks):
        filters = min(base_filters * 2**i, MAX_FILTERS)
        for layer in blocks.conv_block(
            filters, convs, kernel_size, activation, batch_norm, pooling, block_dropout
        ):
            model.add(layer)
    for layer in blocks.classifier_head(
        head, dense_units, dense_dropout, activation, task.num_classes
    ):
        model.add(layer)
    return blocks.compile_for_training(model, hp, task)
