"""The diagonal Gaussian posterior of a VAE (Kingma & Welling 2014): a reparameterized draw and
the KL divergence to the standard normal prior, used by the VAE and its training objective."""

import jax
import jax.numpy as jnp


def sample_posterior(key: jax.Array, mean: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
  """A draw from N(mean, exp(logvar)) (the reparameterization trick)."""
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def kl_to_standard_normal(mean: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, exp(logvar)) || N(0, I)) per video, summed over latent elements [B]."""
  kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
  return kl.reshape(kl.shape[0], -1).sum(axis=1)
