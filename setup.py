"""Install with `pip install -e .` (runtime), `pip install -e ".[notebook]"` (the notebooks'
needs) or `pip install -e ".[test]"` (the test suite's)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

_VERSION = re.search(r'__version__ = "([^"]+)"', Path("jvdm/__init__.py").read_text()).group(1)

setup(
  name="jvdm",
  version=_VERSION,
  description="Video diffusion models in JAX/Flax: 3D UNets, samplers, sharded training.",
  long_description=Path("README.md").read_text(encoding="utf-8"),
  long_description_content_type="text/markdown",
  packages=find_packages(include=["jvdm", "jvdm.*"]),
  python_requires=">=3.11",
  install_requires=[
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "einops>=0.8",
    "grain>=0.2.18",
    "ml_collections>=1.1.0",
    "tensorflow-datasets>=4.9.10",
    # Random-access TFDS datasets (jvdm.data.prepare, tfds_source); tfds asks for it on Linux
    # only, and there is no Windows wheel.
    'array_record>=0.5.0; platform_system != "Windows"',
    # tfds 4.9.10 imports it to prepare a dataset, but declares it only for Python < 3.9
    # (tensorflow/datasets#11212).
    "importlib_resources",
    "numpy",
    "scipy",
    "imageio>=2.38",
    "imageio-ffmpeg>=0.8",
    "pillow",
    "tqdm",
    "absl-py",
    "tensorboardX>=2.6",  # TensorBoard event files beside metrics.jsonl
    # Published models' files (jvdm.pretrained): weights and tokenizers.
    "safetensors>=0.4",
    "tokenizers>=0.20",
  ],
  extras_require={
    # Videos shown inline in notebooks (notebooks/quickstart.ipynb): `pip install -e ".[notebook]"`.
    "notebook": ["mediapy>=1.2", "ipykernel>=6.29"],
    # tensorboard: the tests read the event files as TensorBoard does; nbclient, nbformat,
    # ipykernel and mediapy: tests/test_notebook.py runs the notebooks on a fresh kernel.
    "test": [
      "pytest>=8",
      "pytest-xdist>=3.5",
      "chex>=0.1.90",
      "ruff>=0.8",
      "tensorboard>=2.16",
      "nbclient>=0.10",
      "nbformat>=5.10",
      "ipykernel>=6.29",
      "mediapy>=1.2",
    ],
  },
)
