"""small_cnn: plain VGG-style stacks of conv blocks, searched in depth, width and training.

Default point (trial 0 of every search): 3 blocks of 2 conv-BN-ReLU (32/64/128 filters), max
pooling and dropout 0.25 after each block, global average pooling, AdamW (lr 2e-3, weight decay
0.05), warmup + cosine to the search's max epochs, label smoothing 0.1, batch 128.
Measured with `sweep run --max-trials 1` (35 epochs, seed 0, 5k/5k split of the JPEG-q75 copy,
2 CPU cores): 67.7 % validation (epoch 33) and 68.6 % test accuracy, 92.2 % training
accuracy, 20.2 s per epoch. With dropout 0.35 instead, training accuracy fell to 84.7 % but
validation did not rise (67.3 %), so the default keeps 0.25.
"""

from search_spaces.blocks import Choice, Float, Int, PlainCNN

DESCRIPTION = "Plain conv-block CNNs (2-4 blocks, 16-64 base filters) with training choices."

SPACE = PlainCNN(
    name="small_cnn",
    conv_blocks=Int(2, 4, default=3),
    filters=Choice((16, 32, 48, 64), default=32),
    convs_per_block=Int(1, 3, default=2),
    max_filters=256,  # width doubles per block; the cap keeps 4-block models CPU-sized
    block_dropout=Float(0.0, 0.5, 0.25, step=0.05),
)
build = SPACE.build
