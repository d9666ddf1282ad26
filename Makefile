# The two commands of the README: `make demo` runs the main job, `make test`
# runs the tests. Each creates .venv and installs what it needs on first use,
# Debian's Fashion-MNIST files included.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kres-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-all test-torch lint clean data gpu-carry

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real Fashion-MNIST (60,000 + 10,000 images) from Debian's package; kres
# prepares it as a tfds dataset offline.
$(FASHION_MNIST):
	@command -v apt-get >/dev/null || { echo "No apt-get: put the four Fashion-MNIST IDX .gz files in $(dir $(FASHION_MNIST))" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist

data: $(FASHION_MNIST)

# The main job: train a CIFAR ResNet-20 on Fashion-MNIST (offline) for 2 epochs
# of the ResNet paper's recipe (no augmentation: it slows a run this short),
# export it for TF Serving, and classify test images through the export.
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: $(STAMP) $(FASHION_MNIST)
	$(BIN)/kres train --model cifar_resnet20 --dataset fashion_mnist --epochs 2 --augment none \
		--out $(DEMO_RUN)
	$(BIN)/kres export --model $(DEMO_RUN)/best.keras --name fashion_mnist_resnet20
	$(BIN)/kres predict --saved-model saved_models/fashion_mnist_resnet20 \
		--from-dataset fashion_mnist --count 8

# kres on JAX without TensorFlow, in an environment of its own (requirements-jax.txt).
JAX_VENV ?= .venv-jax
JAX_STAMP := $(JAX_VENV)/.kres-installed
$(JAX_STAMP): pyproject.toml requirements-jax.txt
	test -x $(JAX_VENV)/bin/python || $(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(JAX_VENV)/bin/python -m pip install --quiet -r requirements-jax.txt
	$(JAX_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(JAX_STAMP)

test: $(STAMP) $(JAX_STAMP) $(FASHION_MNIST)
	$(BIN)/python -m pytest -n 2 --dist worksteal
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu KRES_EXPECT_NO_TENSORFLOW=1 \
		$(JAX_VENV)/bin/python -m pytest -n 2 tests/test_without_tensorflow.py

# Everything, the tests marked slow included.
test-all: $(STAMP) $(JAX_STAMP) $(FASHION_MNIST)
	$(BIN)/python -m pytest -n 2 --dist worksteal -m ''
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu KRES_EXPECT_NO_TENSORFLOW=1 \
		$(JAX_VENV)/bin/python -m pytest -n 2 -m '' tests/test_without_tensorflow.py

# The tests against real PyTorch models (timm, torchvision), in an environment of
# their own: PyTorch is never a dependency of kres. About 5.5 GB.
TORCH_VENV ?= .venv-torch
TORCH_STAMP := $(TORCH_VENV)/.kres-installed
$(TORCH_STAMP): pyproject.toml
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install --quiet -e '.[dev]' 'torch==2.14.1' 'torchvision==0.29.1' timm
	touch $(TORCH_STAMP)

test-torch: $(TORCH_STAMP) $(FASHION_MNIST)
	$(TORCH_VENV)/bin/python -m pytest -m torch -n 2

# What benchmarks/gpu_check.sh carries to a GPU machine without a package registry
# (Python 3.12 there): the wheels it lacks, and Fashion-MNIST's IDX files.
GPU_CARRY := benchmarks/gpu_carry
gpu-carry: $(STAMP) $(FASHION_MNIST)
	mkdir -p $(GPU_CARRY)/wheels $(GPU_CARRY)/fashion-mnist
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
		--python-version 3.12 --platform manylinux2014_x86_64 -d $(GPU_CARRY)/wheels \
		keras keras-tuner kt-legacy namex optree six simplejpeg
	cp $(dir $(FASHION_MNIST))*-ubyte.gz $(GPU_CARRY)/fashion-mnist/

lint: $(STAMP)
	$(BIN)/ruff check conftest.py kres tests benchmarks examples

clean:
	rm -rf $(VENV) $(TORCH_VENV) $(JAX_VENV) *.egg-info .pytest_cache .ruff_cache
