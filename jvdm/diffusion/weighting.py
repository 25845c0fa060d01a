"""Loss weightings over noise levels, and the distributions training draws noise levels from.

A weighting is written as a weight on the x0 error (SNR = alpha^2 / sigma^2):
  snr:      SNR: the eps-MSE of DDPM (Ho et al. 2020) whatever the network predicts.
  min_snr:  min(SNR, gamma) (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
            Weighting Strategy", eq. 9); gamma = 5 in the paper.
  edm:      (r^2 + sd^2) / (r sd)^2 with r = sigma / alpha (Karras et al. 2022, Table 1).
  uniform:  not an x0 weight: the plain MSE of whatever the network predicts.
"""

import jax
import jax.numpy as jnp

from jvdm.diffusion.parameterization import SIGMA_DATA, x0_per_output
from jvdm.errors import ConfigError

LOSS_WEIGHTINGS = ("uniform", "snr", "min_snr", "edm")
TIME_SAMPLINGS = ("uniform", "logit_normal")


def output_loss_weight(
  weighting: str,
  prediction: str,
  alpha: jnp.ndarray,
  sigma: jnp.ndarray,
  min_snr_gamma: float = 5.0,
) -> jnp.ndarray:
  """The weight on the squared error of the network's output, shaped like alpha."""
  if weighting not in LOSS_WEIGHTINGS:
    raise ConfigError(f"Unknown loss weighting {weighting!r}; valid: {list(LOSS_WEIGHTINGS)}.")
  if weighting == "uniform":
    return jnp.ones_like(alpha)
  snr = (alpha / sigma) ** 2
  if weighting == "snr":
    x0_weight = snr
  elif weighting == "min_snr":
    x0_weight = jnp.minimum(snr, min_snr_gamma)
  else:
    ratio = sigma / alpha
    x0_weight = (ratio**2 + SIGMA_DATA**2) / (ratio * SIGMA_DATA) ** 2
  return x0_weight * x0_per_output(prediction, alpha, sigma) ** 2


def draw_times(
  rng: jax.Array,
  shape: tuple[int, ...],
  distribution: str = "uniform",
  logit_mean: float = 0.0,
  logit_std: float = 1.0,
) -> jnp.ndarray:
  """Noise levels t in (0, 1) of the given shape.

  uniform: U(0, 1). logit_normal: sigmoid(N(logit_mean, logit_std^2)), SD3's choice for
  rectified flow (Esser et al. 2024, sec. 3.1, eq. 19), which favours the middle of the range.
  """
  if distribution not in TIME_SAMPLINGS:
    raise ConfigError(f"Unknown time sampling {distribution!r}; valid: {list(TIME_SAMPLINGS)}.")
  if distribution == "uniform":
    return jax.random.uniform(rng, shape)
  if not logit_std > 0:
    raise ConfigError(f"The logit-normal standard deviation must be > 0, got {logit_std}.")
  return jax.nn.sigmoid(logit_mean + logit_std * jax.random.normal(rng, shape))


def staggered_levels(progress: jnp.ndarray, stagger, num_frames: int) -> jnp.ndarray:
  """Per-frame times at sampling progress u of Diffusion Forcing's pyramid (Chen et al. 2024,
  sec. 3.4) with a continuous lag: t_k = clip(1 - (u - s k / (T - 1)) / (1 - s), 0, 1).

  `progress` and `stagger` broadcast against each other (e.g. `[S + 1, 1]` and a scalar, or
  `[B, 1]` each); the frames are the last axis: `[..., num_frames]`.
  """
  start = stagger * jnp.arange(num_frames) / max(num_frames - 1, 1)  # [..., T]
  return jnp.clip(1.0 - (progress - start) / (1.0 - stagger), 0.0, 1.0)
