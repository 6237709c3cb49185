"""large_cnn: deeper and wider plain CNNs than small_cnn, with stronger regularization.

Default point: 3 blocks of 2 conv-BN-ReLU at twice small_cnn's width (64/128/256), the net that
measured 69.8 % validation but 97.0 % training accuracy at 51.6 s per epoch on 2 cores: more
dropout and weight decay are in reach to close that gap. Best run on a GPU or with patience.
"""

from search_spaces.blocks import Choice, Float, Int, PlainCNN, Training

DESCRIPTION = "Deeper/wider plain CNNs (3-5 blocks, 32-128 base filters, up to 4 convs a block)."

SPACE = PlainCNN(
    name="large_cnn",
    conv_blocks=Int(3, 5, default=3),
    filters=Choice((32, 48, 64, 96, 128), default=64),
    convs_per_block=Int(2, 4, default=2),
    max_filters=512,
    block_dropout=Float(0.1, 0.5, 0.3, step=0.05),
    dense_layers=Int(0, 1, default=0),
    training=Training(weight_decay=Float(1e-4, 0.3, 0.05, log=True)),
)
build = SPACE.build
