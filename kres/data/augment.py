"""The recipes' training augmentations as Keras preprocessing layers, drawn from keys.

Keras's own layers where Keras has one that does what the recipe's source
describes (`keras.layers.RandomFlip`, `RandomBrightness`, `RandomContrast`,
`RandomSaturation`, `RandAugment`, `MixUp`, `CutMix`); kres's own
subclasses of Keras's image-preprocessing base layer where it has none or
where Keras's differs from the paper:

- `PadCrop`: the CIFAR pad-and-crop (He et al. 2015: 4 pixels of zeros on
  each side, a random crop back to the size), each image its own offsets;
- `RandomResizedCrop`: the Inception crop (Szegedy et al. 2015; torchvision's
  defaults: 8% to 100% of the area, aspect ratio 3/4 to 4/3, ten tries, the
  whole image when none fits), one image at a time, of any size;
- `RandomErasing`: Zhong et al. 2017 (a box of 2% to 40% of the area, aspect
  0.3 to 3.3, with probability p, filled with noise that the model's
  normalisation turns into standard-normal values); Keras's draws the box
  side by side and its probability uniformly below its factor;
- `AugMix`: Keras's `AugMix` picks each chain's operations with Python's
  `random` when the pipeline is traced, so every batch of every epoch gets
  the same chains; this subclass draws them for each batch.

The pipelines call each layer with its draws keyed to a batch or an image
(`kres.data.keyed_draws`), so a seeded pipeline gives the same images whatever
its parallelism.

All layers take and give pixels (0-255), channels last. They are registered
with Keras (``kres>PadCrop``, ...): a model that holds them saves, and loads
where this module is imported.
"""

import keras
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)
from keras.src.utils import backend_utils

from kres.preprocessing import AUTO_AUGMENTATIONS, MAX_MAGNITUDE  # noqa: F401 (re-exported)

# The Inception crop's defaults (torchvision's RandomResizedCrop).
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
# Random erasing's defaults (Zhong et al. 2017).
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)


class _Layer(BaseImagePreprocessingLayer):
    """kres's layers: no factor, channels last, labels unchanged."""

    _USE_BASE_FACTOR = False

    def __init__(self, seed=None, **kwargs):
        kwargs["data_format"] = "channels_last"  # also when a saved config names it
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _seed(self, seed):
        return seed if seed is not None else self._get_seed_generator(self.backend._backend)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable("kres")
class PadCrop(_Layer):
    """The CIFAR pad-and-crop: pad `padding` pixels of zeros, crop back at random.

    Each image of a batch is shifted by its own offsets, each of the
    ``2 * padding + 1`` values in each direction equally likely (a crop of
    the padded image), with nearest-pixel sampling: exact integer shifts.

    Example:

    >>> import numpy as np
    >>> from kres.data.augment import PadCrop
    >>> out = PadCrop(padding=2, seed=0)(np.full((3, 8, 8, 1), 255.0), training=True)
    >>> out.shape, float(out.numpy().max())
    (TensorShape([3, 8, 8, 1]), 255.0)
    """

    def __init__(self, padding=4, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an integer >= 0. Received: padding={padding!r}")
        self.padding = padding

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        batch = 1 if len(shape) == 3 else shape[0]
        shifts = self.backend.random.randint((batch, 2), -self.padding, self.padding + 1,
                                             seed=self._seed(seed))
        return {"shifts": shifts}

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        shifts = self.backend.cast(transformation["shifts"], "float32")
        ones = self.backend.numpy.ones_like(shifts[:, 0])
        zeros = self.backend.numpy.zeros_like(ones)
        # Output pixel (y, x) reads input (y + dy, x + dx); outside the image: 0.
        transform = self.backend.numpy.stack(
            [ones, zeros, shifts[:, 1], zeros, ones, shifts[:, 0], zeros, zeros], axis=1)
        return self.backend.image.affine_transform(
            images, transform, interpolation="nearest", fill_mode="constant", fill_value=0,
            data_format="channels_last")

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable("kres")
class RandomResizedCrop(_Layer):
    """The Inception crop, resized to ``height x width``: one image at a time, of any size.

    A box of `area` (fractions of the image's area) with a width-to-height
    ratio in `aspect`, the first of `tries` draws that fits in the image, the
    whole image when none does; bilinear resize. On TensorFlow (a tf.data
    pipeline) the box comes from TensorFlow's one-op sampler, elsewhere from
    the same draws written in Keras's ops.

    Example:

    >>> import numpy as np
    >>> from kres.data.augment import RandomResizedCrop
    >>> RandomResizedCrop(32, 32, seed=0)(np.zeros((50, 70, 3)), training=True).shape
    TensorShape([32, 32, 3])
    """

    def __init__(self, height, width, area=CROP_AREA, aspect=CROP_ASPECT, tries=10, seed=None,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.height, self.width = height, width
        self.area, self.aspect, self.tries = tuple(area), tuple(aspect), tries

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        if len(shape) == 4:
            raise ValueError(
                "RandomResizedCrop takes one image at a time (images of any size): map it over "
                f"a dataset's images before batching. Received: images.shape={shape}")
        seed = self._seed(seed)
        if self.backend.name == "tensorflow":
            return {"box": self._tf_box(shape, seed)}
        return {"box": self._box(shape, seed)}

    def _tf_box(self, shape, seed):
        """``[top, left, height, width]`` from TensorFlow's one-op sampler (the same
        draws as `_box`'s, and several times faster per image than its dozens of
        small ops in a tf.data map)."""
        import tensorflow as tf
        from keras.src.random.seed_generator import draw_seed

        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([shape[0], shape[1], shape[2]]), tf.zeros([0, 0, 4]),
            seed=draw_seed(seed), min_object_covered=0.0, aspect_ratio_range=self.aspect,
            area_range=self.area, max_attempts=self.tries, use_image_if_no_bounding_boxes=True)
        return tf.concat([begin[:2], size[:2]], axis=0)

    def _box(self, shape, seed):
        """``[top, left, height, width]``: the first of `tries` draws of area and
        aspect that fits, else the whole image (any backend)."""
        ops = self.backend
        h, w = ops.cast(shape[0], "float32"), ops.cast(shape[1], "float32")
        fraction = ops.random.uniform((self.tries,), *self.area, seed=seed)
        log_ratio = ops.random.uniform((self.tries,), ops.numpy.log(self.aspect[0]),
                                       ops.numpy.log(self.aspect[1]), seed=seed)
        ratio = ops.numpy.exp(log_ratio)
        crop_w = ops.numpy.round(ops.numpy.sqrt(fraction * h * w * ratio))
        crop_h = ops.numpy.round(ops.numpy.sqrt(fraction * h * w / ratio))
        fits = (crop_w >= 1) & (crop_w <= w) & (crop_h >= 1) & (crop_h <= h)
        first = ops.numpy.argmax(ops.cast(fits, "int32"))
        any_fits = ops.numpy.any(fits)
        crop_h = ops.numpy.where(any_fits, ops.numpy.take(crop_h, first), h)
        crop_w = ops.numpy.where(any_fits, ops.numpy.take(crop_w, first), w)
        corner = ops.random.uniform((2,), 0.0, 1.0, seed=seed)
        top = ops.numpy.floor(corner[0] * (h - crop_h + 1))
        left = ops.numpy.floor(corner[1] * (w - crop_w + 1))
        return ops.cast(ops.numpy.stack([top, left, crop_h, crop_w]), "int32")

    def transform_single_image(self, image, transformation, training=True):
        image = self.backend.cast(image, self.compute_dtype)
        if training and transformation is not None:
            box = transformation["box"]
            image = self.backend.core.slice(image, [box[0], box[1], 0],
                                            [box[2], box[3], self.backend.shape(image)[2]])
        return self.backend.image.resize(image, (self.height, self.width),
                                         interpolation="bilinear", data_format="channels_last")

    def transform_images(self, images, transformation, training=True):
        if images.shape[0] != 1:
            raise ValueError("RandomResizedCrop takes one image at a time. Received: "
                             f"images.shape={images.shape}")
        return self.backend.numpy.expand_dims(
            self.transform_single_image(images[0], transformation, training), 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-3], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "area": self.area, "aspect": self.aspect, "tries": self.tries}


@keras.saving.register_keras_serializable("kres")
class RandomErasing(_Layer):
    """Random erasing (Zhong et al. 2017), each image of a batch on its own.

    With `probability`, a box of `area` of the image (fractions) with an
    aspect ratio in `aspect` (uniform in its logarithm), at a uniform
    position, is filled with ``mean + std * N(0, 1)`` per channel: `mean`
    and `std` are the model's normalisation in pixels
    (`kres.preprocessing.Preprocessing.pixel_statistics`), so the model sees
    standard-normal noise there.

    Example:

    >>> import numpy as np
    >>> from kres.data.augment import RandomErasing
    >>> erase = RandomErasing(1.0, mean=(128.0,), std=(64.0,), seed=0)
    >>> out = erase(np.zeros((2, 16, 16, 1)), training=True).numpy()
    >>> bool((out != 0).any(axis=(1, 2, 3)).all())  # every image got its box
    True
    """

    def __init__(self, probability, mean, std, area=ERASE_AREA, aspect=ERASE_ASPECT,
                 seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.probability = probability
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.area, self.aspect = tuple(area), tuple(aspect)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        ops, seed = self.backend, self._seed(seed)
        shape = ops.shape(images)
        batch = 1 if len(shape) == 3 else shape[0]
        h, w = ops.cast(shape[-3], "float32"), ops.cast(shape[-2], "float32")
        area = h * w * ops.random.uniform((batch,), *self.area, seed=seed)
        ratio = ops.numpy.exp(ops.random.uniform((batch,), ops.numpy.log(self.aspect[0]),
                                                 ops.numpy.log(self.aspect[1]), seed=seed))
        box_h = ops.numpy.clip(ops.numpy.floor(ops.numpy.sqrt(area * ratio)), 1, h)
        box_w = ops.numpy.clip(ops.numpy.floor(ops.numpy.sqrt(area / ratio)), 1, w)
        corner = ops.random.uniform((batch, 2), 0.0, 1.0, seed=seed)
        top = ops.numpy.floor(corner[:, 0] * (h - box_h + 1))
        left = ops.numpy.floor(corner[:, 1] * (w - box_w + 1))
        apply = ops.random.uniform((batch,), 0.0, 1.0, seed=seed) < self.probability
        noise = ops.random.normal((batch, shape[-3], shape[-2], shape[-1]), seed=seed)
        return {"top": top, "left": left, "box_h": box_h, "box_w": box_w, "apply": apply,
                "noise": noise}

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        ops, t = self.backend, transformation
        shape = ops.shape(images)
        rows = ops.cast(ops.numpy.arange(shape[1]), "float32")[None, :, None, None]
        cols = ops.cast(ops.numpy.arange(shape[2]), "float32")[None, None, :, None]

        def per_image(v):
            return v[:, None, None, None]

        inside = ((rows >= per_image(t["top"])) & (rows < per_image(t["top"] + t["box_h"]))
                  & (cols >= per_image(t["left"])) & (cols < per_image(t["left"] + t["box_w"]))
                  & per_image(t["apply"]))
        noise = ops.numpy.array(self.mean) + ops.numpy.array(self.std) * t["noise"]
        return ops.numpy.where(inside, ops.cast(noise, images.dtype), images)

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "mean": self.mean,
                "std": self.std, "area": self.area, "aspect": self.aspect}


@keras.saving.register_keras_serializable("kres")
class RandomFlip(keras.layers.RandomFlip):
    """Keras's horizontal `RandomFlip`, cheaper: one image is mirrored only when
    drawn, a batch by a blend.

    Keras's selects between the images and their mirror images with a
    broadcast ``where``: on a batch of 16 images of 224x224, TensorFlow's
    element-by-element select took longer than decoding them (the ImageNet
    pipeline ran at half the speed of the ``tf.image`` flip before it,
    `benchmarks/pipeline_vs_model.py`). Here a single image is mirrored
    under a condition, and only when drawn; a batch is
    ``x * (1 - f) + mirror * f`` with f 0 or 1 per image, the same images
    exactly.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__("horizontal", seed=seed, **kwargs)

    def _flip_inputs(self, inputs, transformation):
        if transformation is None:
            return inputs
        ops = self.backend
        flips = transformation["flips"]
        if len(inputs.shape) == 3 or inputs.shape[0] == 1:  # one image (the base adds an axis)
            return ops.core.cond(ops.numpy.reshape(flips, ()),
                                 lambda: ops.numpy.flip(inputs, axis=-2), lambda: inputs)
        flips = ops.cast(flips, inputs.dtype)
        mirror = ops.numpy.flip(inputs, axis=-2)
        return inputs * (1 - flips) + mirror * flips

    def transform_single_image(self, image, transformation, training=True):
        # The base layer would add a batch axis and take it away again.
        if not training:
            return image
        return self._flip_inputs(self.backend.cast(image, self.compute_dtype), transformation)

    def get_config(self):
        config = super().get_config()
        config.pop("mode", None)
        return config


@keras.saving.register_keras_serializable("kres")
class AugMix(keras.layers.AugMix):
    """Keras's `AugMix` with its operations drawn for each batch.

    Keras's picks each chain's operations with Python's `random` while the
    pipeline is traced: every batch of every epoch would get the same
    chains. Here each link of each chain is one of Keras's operations or
    none, drawn uniformly from the seed for each batch (only the drawn
    operation runs, `keras.ops.switch`); the mixing weights (Dirichlet) and
    the blend with the original (Beta) are Keras's, per batch, as Keras
    draws them.
    """

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        if backend_utils.in_tf_graph():  # as Keras's: the operations run in TensorFlow there
            for layer in (self, *[getattr(self, name) for name in self._augment_layers]):
                layer.backend.set_backend("tensorflow")
        seeds = seed or self._get_seed_generator(self.backend._backend)
        transformation = {
            "chain_mixing_weights": self._sample_from_dirichlet([self.num_chains], self.alpha,
                                                                seeds),
            "weight_sample": self.backend.random.beta((), self.alpha, self.alpha, seed=seeds)}
        names = list(self._augment_layers)
        chains = []
        for _ in range(self.num_chains):
            links = []
            for _ in range(self.chain_depth):
                choice = self.backend.random.randint((), 0, len(names) + 1, seed=seeds)
                links.append({"choice": choice, "transformations": [
                    getattr(self, name).get_random_transformation(data, seed=seeds)
                    for name in names]})
            chains.append(links)
        transformation["chain_transforms"] = chains
        return transformation

    def transform_images(self, images, transformation, training=True):
        if not training:
            return self.backend.cast(images, self.compute_dtype)
        ops, names = self.backend, list(self._augment_layers)
        images = ops.cast(images, self.compute_dtype)
        weights = ops.cast(transformation["chain_mixing_weights"], self.compute_dtype)
        blend = ops.cast(transformation["weight_sample"], self.compute_dtype)
        mixed = ops.numpy.zeros_like(images)
        for c, chain in enumerate(transformation["chain_transforms"]):
            chained = images
            for link in chain:
                branches = [
                    (lambda x, name=name, t=t: ops.cast(
                        getattr(self, name).transform_images(x, t), self.compute_dtype))
                    for name, t in zip(names, link["transformations"], strict=True)]
                chained = ops.core.switch(link["choice"], [*branches, lambda x: x], chained)
            mixed = mixed + chained * weights[c]
        images = blend * images + (1 - blend) * mixed
        return ops.numpy.clip(images, *self.value_range)


def rand_augment(ops, magnitude, seed=None):
    """Keras's `RandAugment` with ``num_ops = ops`` and magnitude `magnitude` of 10
    (Cubuk et al. 2020's N and M; Keras's factor is ``magnitude / 10``).

    Keras draws the operations for each batch and their strengths for each
    image.
    """
    return keras.layers.RandAugment(value_range=(0, 255), num_ops=ops,
                                    factor=magnitude / MAX_MAGNITUDE, seed=seed)


@keras.saving.register_keras_serializable("kres")
class RandomSaturation(keras.layers.RandomSaturation):
    """Keras's `RandomSaturation` with the saturation kept in [0, 1].

    Keras's clips the scaled saturation to the pixels' `value_range` (0 to
    255 here), so a saturation pushed past 1 comes back as negative pixel
    values; here it is clipped to 1, as `tf.image.adjust_saturation` does.
    """

    def transform_images(self, images, transformation=None, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        ops = self.backend
        factor = ops.cast(transformation["factor"], self.compute_dtype)[:, None, None]
        hsv = ops.image.rgb_to_hsv(images, data_format="channels_last")
        saturation = ops.numpy.clip(hsv[..., 1] * factor, 0.0, 1.0)
        hsv = ops.numpy.stack([hsv[..., 0], saturation, hsv[..., 2]], axis=-1)
        return ops.image.hsv_to_rgb(hsv, data_format="channels_last")


def saturation_jitter(strength):
    """`RandomSaturation` multiplying the saturation by 1 - `strength` to
    1 + `strength` (Keras's factor f multiplies it by ``f / (1 - f)``)."""
    return RandomSaturation(((1 - strength) / (2 - strength), (1 + strength) / (2 + strength)),
                            value_range=(0, 255))
