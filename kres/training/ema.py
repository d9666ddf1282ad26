"""An exponential moving average of a model's whole state, for `model.fit`.

Keras's optimizers average the trainable variables (``use_ema``); a network
with batch norm also needs its moving statistics averaged, or the averaged
weights are evaluated with the statistics of the raw ones. `WeightAverage`
averages every floating-point variable of the model (`model.weights`:
kernels, biases, batch-norm scales, offsets, means and variances), as timm's
ModelEmaV3 and torchvision's ``--model-ema`` average a PyTorch state dict,
with the same warmup of the decay: after ``t`` updates (the first one
copies) the decay is ``min(decay, 1 - (1 + t) ** -power)``.

`WeightAverage.callbacks` gives the two callbacks a fit needs
(`kres.training.fit.fit` places them): the first updates the average after
every optimizer update and, at each epoch's end, puts the averaged state in
the model and scores it on the validation data, so that the logs' ``val_*``
are the average's (the raw weights' go to ``raw_val_*``) and the callbacks
between the two (the best checkpoint, early stopping) see the average; the
second saves the average beside the backup and puts the raw weights back
before `keras.callbacks.BackupAndRestore` saves them. A resumed fit loads
the average saved with the epoch the backup resumes at, so a killed run
resumes it exactly. When the fit ends the model holds the average.
"""

import glob
import os

import keras
import numpy as np

from kres.training.recipes import EMA_WARMUP_POWER


class WeightAverage:
    """The exponential moving average of `model`'s floating-point variables.

    Args:
        model: a built Keras model.
        decay: the decay per update once warmed up.
        warmup: warm the decay up (``1 - (1 + t) ** -power`` after ``t``
            updates, capped at `decay`); else `decay` from the second update.
        power: the warmup's power.

    Example:

    >>> import keras, numpy as np
    >>> from kres.training.ema import WeightAverage
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    >>> average = WeightAverage(model, decay=0.5, warmup=False)
    >>> for value in (1.0, 3.0):
    ...     model.set_weights([np.array([[value]])])
    ...     average.update()
    >>> float(average.averages[0].numpy()[0, 0])  # the first update copies: 0.5 * 1 + 0.5 * 3
    2.0
    """

    def __init__(self, model, decay, warmup=True, power=EMA_WARMUP_POWER):
        self.model, self.decay, self.warmup, self.power = model, decay, warmup, power
        self.variables = [v for v in model.weights if "float" in str(v.dtype)]
        # A copy of each value: from `v.value` itself the TensorFlow backend
        # would make the average the model's own variable.
        self.averages = [keras.Variable(np.array(v.numpy()), trainable=False, dtype=v.dtype,
                                        name=f"average_{i}")
                         for i, v in enumerate(self.variables)]
        self.updates = keras.Variable(0, trainable=False, dtype="int64", name="updates")
        self._raw = None
        self.last_raw = None  # the model's raw weights when a fit ended (get_weights order)
        self._step = _compiled(self._update)

    def decay_at(self, t):
        """The decay of the update made after `t` earlier ones (0 for the first: a copy).

        Example:

        >>> import keras
        >>> from kres.training.ema import WeightAverage
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> average = WeightAverage(model, decay=0.9998)
        >>> [round(float(average.decay_at(t)), 4) for t in (0, 1, 100, 10**6)]
        [0.0, 0.4054, 0.9686, 0.9998]
        """
        t = keras.ops.cast(t, "float32")
        if self.warmup:
            decay = keras.ops.minimum(self.decay, 1.0 - (1.0 + t) ** -self.power)
        else:
            decay = keras.ops.convert_to_tensor(self.decay, "float32")
        return keras.ops.where(t > 0, decay, 0.0)

    def _update(self):
        decay = self.decay_at(self.updates.value)
        for average, variable in zip(self.averages, self.variables):
            value = variable.value
            average.assign(average.value * keras.ops.cast(decay, value.dtype)
                           + value * keras.ops.cast(1.0 - decay, value.dtype))
        self.updates.assign(self.updates.value + 1)

    def update(self):
        """Averages the model's current state in (one update)."""
        self._step()

    def swap_in(self):
        """Puts the average in the model, keeping the raw values for `swap_out`."""
        self._raw = [np.array(v.numpy()) for v in self.variables]
        for variable, average in zip(self.variables, self.averages):
            variable.assign(_copy(average.value))

    def swap_out(self):
        """Puts back the raw values `swap_in` took out."""
        for variable, raw in zip(self.variables, self._raw):
            variable.assign(raw)
        self._raw = None

    def save(self, path):
        """Writes the average and its update count to an ``.npz`` file, atomically."""
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, updates=np.asarray(self.updates.numpy()),
                 **{f"v{i}": a.numpy() for i, a in enumerate(self.averages)})
        os.replace(tmp, path)

    def load(self, path):
        """Restores a `save`d average (of a model of the same variables)."""
        with np.load(path) as stored:
            if len(stored.files) != len(self.averages) + 1:
                raise ValueError(f"{path} holds the average of {len(stored.files) - 1} "
                                 f"variables; this model has {len(self.averages)}.")
            for i, average in enumerate(self.averages):
                average.assign(stored[f"v{i}"])
            self.updates.assign(int(stored["updates"]))

    def callbacks(self, val_ds, state_dir, first_epoch, initial_epoch=0):
        """The two callbacks of a fit that averages: ``(first, last)``.

        `first` goes first in the fit's callbacks, `last` just before the
        backup's. `state_dir` keeps the average of each backed-up epoch
        (the backup's own directory, removed with it when the fit ends);
        `first_epoch` is where the fit starts (`kres.training.fit.start_epoch`):
        beyond `initial_epoch` the fit resumes, and the average saved with
        that epoch is loaded.
        """
        return (_AverageIn(self, val_ds, state_dir, first_epoch, initial_epoch),
                _AverageOut(self, state_dir))


def state_path(state_dir, epoch):
    """The file of the average after `epoch` epochs."""
    return os.path.join(state_dir, f"average-{epoch}.npz")


class _AverageIn(keras.callbacks.Callback):
    """Updates the average after each optimizer update; at an epoch's end, puts
    it in the model and scores it on the validation data (the logs' ``val_*``;
    Keras's scores of the raw weights become ``raw_val_*``)."""

    def __init__(self, average, val_ds, state_dir, first_epoch, initial_epoch):
        super().__init__()
        self.average, self.val_ds = average, val_ds
        self.state_dir, self.first_epoch, self.initial_epoch = (state_dir, first_epoch,
                                                                initial_epoch)

    def on_train_begin(self, logs=None):
        if self.first_epoch > self.initial_epoch:
            path = state_path(self.state_dir, self.first_epoch)
            if not os.path.isfile(path):
                raise RuntimeError(
                    f"The run resumes at epoch {self.first_epoch} with a weight average, but "
                    f"{path} is missing: the backup was not written by a run that averages.")
            self.average.load(path)
        self._seen = None

    def _iterations(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        if self._seen is None:  # the optimizer's count, once the backup has restored it
            self._seen = self._iterations()

    def on_train_batch_end(self, batch, logs=None):
        # On JAX, the fit holds the weights outside the model's variables
        # during an epoch: they are put back first.
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        # With gradient accumulation the weights change once every few batches:
        # the average is updated when the optimizer's update count moves.
        iterations = self._iterations()
        if iterations != self._seen:
            self._seen = iterations
            self.average.update()

    def on_epoch_end(self, epoch, logs=None):
        self.average.swap_in()
        if logs is None or self.val_ds is None:
            return
        scores = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)
        for key in [k for k in logs if k.startswith("val_")]:
            logs["raw_" + key] = logs[key]
            logs[key] = scores[key[len("val_"):]]

    def on_train_end(self, logs=None):
        if self.average._raw is not None:  # a stop left the average in the model
            self.average.swap_out()
        self.average.last_raw = self.model.get_weights()
        for variable, average in zip(self.average.variables, self.average.averages):
            variable.assign(_copy(average.value))


class _AverageOut(keras.callbacks.Callback):
    """Saves the average of the epoch just ended (and keeps the one before, for
    the backup's own fallback copy), then puts the raw weights back for the
    backup."""

    def __init__(self, average, state_dir):
        super().__init__()
        self.average, self.state_dir = average, state_dir

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.state_dir, exist_ok=True)
        self.average.save(state_path(self.state_dir, epoch + 1))
        for path in glob.glob(os.path.join(self.state_dir, "average-*.npz")):
            saved = os.path.basename(path)[len("average-"):-len(".npz")]
            if saved.isdigit() and int(saved) < epoch:
                os.remove(path)
        if not self.model.stop_training:
            self.average.swap_out()


def _copy(value):
    """A copy of a variable's value: on JAX, the fit and evaluation donate
    (free) the buffers of the model's variables, which must not be the
    average's own."""
    return keras.ops.copy(value)


def _compiled(function):
    """`function` as one TensorFlow graph on the TensorFlow backend (one call per
    update instead of an op per variable); as it is elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return function
    import tensorflow as tf

    return tf.function(function, autograph=False)
