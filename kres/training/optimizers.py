"""The optimizer a recipe makes: Keras's own class, its schedule and its weight decay.

`make_optimizer` turns a `kres.training.recipes.Recipe` into a Keras
optimizer (SGD, AdamW, LAMB or Lion) with its per-batch learning-rate
schedule (a `keras.optimizers.schedules` object), gradient clipping and
accumulation, and weight decay as that optimizer wants it.

Weight decay with SGD is coupled L2, as in the papers' SGD (and PyTorch's
``weight_decay``): each decayed variable carries an L2 regularizer of
``weight_decay / 2 * ||w||^2``, so its gradient gains ``weight_decay * w``
before momentum. With AdamW, LAMB and Lion it is decoupled (Loshchilov &
Hutter 2019), the optimizers' own ``weight_decay``: each update shrinks a
decayed variable by ``learning_rate * weight_decay * w`` (PyTorch's AdamW
does the same), so its values are larger (0.05 rather than 5e-4).
"""

import keras

# Keras's classes by the recipes' names. SGD's weight decay is the papers' coupled L2; the
# others' is their own decoupled decay.
OPTIMIZERS = {"sgd": "SGD", "adamw": "AdamW", "lamb": "Lamb", "lion": "Lion"}


def batch_scale(recipe):
    """What the recipe's `learning_rate` is multiplied by: ``batch_size x
    accumulation_steps / 256`` with `scale_lr` (the batch an update sees), else 1."""
    return recipe.batch_size * recipe.accumulation_steps / 256 if recipe.scale_lr else 1.0


def learning_rate_schedule(recipe, steps_per_epoch):
    """The recipe's per-batch schedule (a `keras.optimizers.schedules` object;
    the learning rate itself, a float, for the constant schedule).

    It counts batches, also with gradient accumulation: Keras's optimizer
    evaluates its schedule at the number of batches seen (``_iterations``),
    not of updates made.

    Example:

    >>> from kres.training.optimizers import learning_rate_schedule
    >>> from kres.training.recipes import RECIPES
    >>> schedule = learning_rate_schedule(RECIPES["he2015-cifar"], steps_per_epoch=100)
    >>> round(float(schedule(8200)), 6), round(float(schedule(8201)), 6)
    (0.1, 0.01)
    """
    lr = recipe.learning_rate * batch_scale(recipe)
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant":
        return lr
    if recipe.schedule == "cosine":
        warmup = int(round(recipe.warmup_epochs * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else lr, decay_steps=max(total - warmup, 1),
            warmup_target=lr if warmup else None, warmup_steps=warmup)
    boundaries = [int(round(m * total)) for m in recipe.milestones]
    values = [lr * recipe.gamma ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def decayed_variables(model, decay_all=True):
    """The trainable variables weight decay applies to: all of them, or with
    `decay_all` False only the kernels (rank > 1), sparing batch norm and biases."""
    return [v for v in model.trainable_weights if decay_all or len(v.shape) > 1]


def apply_weight_decay(model, weight_decay, decay_all=True):
    """Adds coupled L2 weight decay to `model`'s trainable variables (SGD's).

    Each decayed variable gets the regularizer ``weight_decay / 2 * sum(w^2)``,
    whose gradient is ``weight_decay * w``; the others get none (an earlier
    call's is removed). Regularizers set on variables are not part of the
    model's config, so saved models carry no training setting.

    Args:
        model: a Keras model.
        weight_decay: the decay coefficient (0: no variable is decayed).
        decay_all: decay every trainable variable; False decays only kernels
            (variables of rank > 1), sparing batch norm and biases.

    Returns:
        The number of decayed variables.
    """
    for variable in model.trainable_weights:
        variable.regularizer = None
    if weight_decay <= 0:
        return 0
    regularizer = keras.regularizers.L2(weight_decay / 2)
    decayed = decayed_variables(model, decay_all)
    for variable in decayed:
        variable.regularizer = regularizer
    return len(decayed)


def make_optimizer(recipe, model, steps_per_epoch, learning_rate=None):
    """The recipe's Keras optimizer for `model`, with its schedule, clipping and
    accumulation, and weight decay as the optimizer wants it; `learning_rate`,
    a rate or schedule, replaces the recipe's schedule when given.

    SGD: the coupled L2 regularizers set on the decayed variables
    (`apply_weight_decay`). AdamW, LAMB, Lion: the optimizer's own decoupled
    ``weight_decay``, with the variables `decay_all` spares excluded
    (``exclude_from_weight_decay``), and no regularizer.

    Example:

    >>> import keras
    >>> from kres.training.optimizers import make_optimizer
    >>> from kres.training.recipes import RECIPES
    >>> import dataclasses
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> recipe = dataclasses.replace(RECIPES["fast-cpu"], optimizer="adamw",
    ...                              learning_rate=1e-3, weight_decay=0.05)
    >>> optimizer = make_optimizer(recipe, model, steps_per_epoch=10)
    >>> type(optimizer).__name__, optimizer.weight_decay
    ('AdamW', 0.05)
    """
    common = dict(
        learning_rate=learning_rate if learning_rate is not None
        else learning_rate_schedule(recipe, steps_per_epoch),
        global_clipnorm=recipe.clip_norm or None,
        gradient_accumulation_steps=recipe.accumulation_steps
        if recipe.accumulation_steps > 1 else None)
    if recipe.optimizer == "sgd":
        apply_weight_decay(model, recipe.weight_decay, recipe.decay_all)
        return keras.optimizers.SGD(momentum=recipe.momentum, nesterov=recipe.nesterov,
                                    **common)
    apply_weight_decay(model, 0.0)
    optimizer = getattr(keras.optimizers, OPTIMIZERS[recipe.optimizer])(
        weight_decay=recipe.weight_decay or None, **common)
    if recipe.weight_decay and not recipe.decay_all:
        decayed = {id(v) for v in decayed_variables(model, False)}
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_weights if id(v) not in decayed])
    return optimizer
