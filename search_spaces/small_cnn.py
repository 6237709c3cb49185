"""small_cnn: plain VGG-style stacks of conv blocks, searched in depth, width and training.

Default point (trial 0 of every search): 3 blocks of 2 conv-BN-ReLU (64/128/256 filters), max
pooling after each block, dropout 0.3/0.4/0.5 by depth, global average pooling, dropout 0.5,
AdamW (lr 3e-3, weight decay 0.1), warmup + cosine to the trial's epochs, label smoothing 0.1,
batch 128. It is the best plain net of `../shared/SMALL_DATA_RECIPES.md` (5k/5k split, seed 0,
2 CPU cores): 71.4 % validation after 50 epochs (68.6 % after 30, still rising), where the
previous default (32/64/128, dropout 0.25, weight decay 0.05: 67.7 % after 35 epochs) stopped.
Twice the width costs twice the time on a CPU: 41 s vs 82 s a training epoch of 5,000 images
in plain Keras float32, measured one after the other on an AVX2-only 2-core machine.

Levers measured from the default point (`benchmarks/levers.py`, 5k/5k split, 40 epochs,
bfloat16 on a 2-core EPYC), against its 70.81 % +- 0.04 (3 seeds, `reports/default/`):
- SGD, Nesterov momentum 0.9, learning rate 0.05, weight decay 0.005 (2.5e-4 a step, as AdamW's
  3e-3 x 0.1 = 3e-4): 66.76 % validation, 78.8 % training (seed 0); with weight decay 0.0005:
  65.92 %, 74.5 % training. It underfits with less decay too, so the rate, not the decay, holds
  it back; 4 to 5 points below on one seed each, past the noise. At rate 0.2 (weight decay
  0.005): 69.76 %, 94.0 % training (seed 0); at 0.4: 71.18 % +- 0.11 (71.10 and 71.26 %, 2
  seeds; training 93.1 and 94.4 %), level with AdamW (+0.37) with a lower training fit; at 0.8
  it stalled near the peak rate, and patience, then counted from the first epoch, stopped it
  at epoch 18 (38.90 %, 36.9 % training; 44.2 % and rising at the stop). This space offers
  SGD only AdamW's rates (at most 0.01), where it underfits; `large_cnn` searches SGD's own.
- Batch 64 (twice the updates, more gradient noise): 71.04 % +- 0.45 (71.36 and 70.72 %, 2
  seeds; training 97.6 and 96.1 %): +0.23 points, inside the noise; 128 stays the default.
- Three convolutions a block instead of two (1.93 M parameters against 1.15 M, 1.7x the
  multiply-adds; 22.6 s an epoch against 16.5 s for the default point, in other runs of the
  same session): 69.96 % validation, 98.1 % training (seed 0): -0.85 points, one seed; depth
  fits the training part harder and does not buy validation, so 2 stays the default.
- Label smoothing 0.3 instead of 0.1: 69.88 % validation, 89.6 % training (seed 0): the
  training fit drops by 8 points and validation does not follow (-0.93); 0.1 stays.
- Learning rate and weight decay as a coupled pair: twice the rate and half the decay (6e-3,
  0.05: the same decay a step, as Keras scales the decay by the rate): 70.48 % validation,
  96.9 % training (seed 0), -0.33, inside the noise: along the product the two are
  interchangeable here, so the search need not spend trials on both.
"""

from search_spaces.blocks import Choice, Float, Int, PlainCNN, Training

DESCRIPTION = "Plain conv-block CNNs (2-4 blocks, 16-64 base filters) with training choices."

SPACE = PlainCNN(
    name="small_cnn",
    conv_blocks=Int(2, 4, default=3),
    filters=Choice((16, 32, 48, 64), default=64),
    convs_per_block=Int(1, 3, default=2),
    max_filters=256,  # width doubles per block; the cap keeps 4-block models CPU-sized
    block_dropout=Float(0.0, 0.5, 0.3, step=0.05),
    dropout_growth=Float(0.0, 0.2, 0.1, step=0.05),
    head_dropout=Float(0.0, 0.6, 0.5, step=0.1),
    training=Training(
        learning_rate=Float(1e-4, 1e-2, 3e-3, log=True),
        weight_decay=Float(1e-5, 0.3, 0.1, log=True),
    ),
)
build = SPACE.build
