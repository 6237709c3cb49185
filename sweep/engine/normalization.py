"""Batch normalisation at the speed of the model's precision, on TensorFlow.

Keras 3's `BatchNormalization` computes in float32 whatever its dtype policy: under
`mixed_bfloat16` it casts its input up, normalises with separate ops, and casts the result back,
forward and backward. On the 2-core CPU (avx512_bf16) that held bfloat16's gain over float32 to
1.30-1.81x, against 1.79-1.94x for the same net without batch normalisation
(`benchmarks/precision_layers.py`). TensorFlow's fused kernel (`FusedBatchNormV3`, the one
Keras 2 used) takes bfloat16 or float16 input with float32 scale, offset and statistics, in one
op each way.

`fuse` gives each `BatchNormalization` layer of a reduced-precision model this module's subclass,
once the rules have checked the model as the space built it: same weights, same configuration,
the same computation (statistics in float32, the output rounded to the layer's compute dtype as
Keras rounds it) in one kernel. The one difference: the kernel's batch variance, which updates
the moving variance, is the unbiased one, larger by n/(n-1) for n values per channel (131,072
for a batch of 128 at 32x32, 2,048 at 4x4). Other backends, float32 models, and layers the kernel
cannot take (not 4-D channels-last, masked, renormalising, synchronised) keep Keras's own path.

Measured on the 2-core CPU (README, Benchmarks): the tool 2.008x plain float32 Keras per epoch
on `small_cnn`'s default point (`benchmarks/trial_speed.py`, median of 2 warm rounds), where
Keras's layer had left it near plain bfloat16 Keras's 1.04-1.36x; accuracy on its 40-epoch
schedule 70.06 % +- 0.17 against float32's 69.65 % +- 0.01 (2 seeds each, same seeds and
split: `benchmarks/levers.py`).
"""

from __future__ import annotations

import keras

from sweep import backend

REDUCED_DTYPES = ("bfloat16", "float16")
KERNEL_MIN_EPSILON = 1.001e-5  # cuDNN's floor: on a GPU the kernel would not take less


class BatchNormalization(keras.layers.BatchNormalization):
    """Keras's layer computed by TensorFlow's fused kernel in the input's own dtype.

    It keeps Keras's class name and module on purpose. Keras names a layer's weights in a saved
    file after its class, so weights saved with either layer load into the other (trials resumed
    from checkpoints of an earlier version of the tool; `evaluate` and `export`, which rebuild
    Keras's own layer). And a model saved whole (`.keras`) records Keras's layer, which it is
    but for the kernel, so it loads anywhere, without this tool."""

    def call(self, inputs, training=None, mask=None):
        if not self._fused_kernel_takes(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        if not (training and self.trainable):
            return tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                is_training=False)[0]
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, is_training=True)
        for average, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            average.assign(average * self.momentum + batch * (1.0 - self.momentum))
        return outputs

    def _fused_kernel_takes(self, inputs, mask) -> bool:
        return (mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype) in REDUCED_DTYPES
                and not self.renorm and not getattr(self, "synchronized", False)
                and self.epsilon >= KERNEL_MIN_EPSILON)


BatchNormalization.__module__ = keras.layers.BatchNormalization.__module__  # see its docstring


def fuse(model: keras.Model) -> int:
    """Give `model`'s `BatchNormalization` layers of a mixed reduced-precision policy (float32
    weights, which the kernel's statistics are) the fused kernel's subclass, on TensorFlow only;
    returns how many (one the kernel cannot take, a 2-D one say, still runs Keras's path). Run
    after `rules.check_model`, which allows Keras's exact classes only: the swap is the tool's,
    made on a model the rules have passed."""
    if backend.name() != "tensorflow":
        return 0
    swapped = [layer for layer in backend.all_layers(model)
               if type(layer) is keras.layers.BatchNormalization
               and layer.compute_dtype in REDUCED_DTYPES and layer.variable_dtype == "float32"]
    for layer in swapped:
        layer.__class__ = BatchNormalization  # no state of its own: only `call` differs
    return len(swapped)
