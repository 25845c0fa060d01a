"""A `nn.Dense` whose kernel and bias carry logical partitioning axes."""

import flax.linen as nn
import jax.numpy as jnp

from jvdm.parallel.axes import EMBED, MLP


def dense(
  features: int,
  *,
  dtype: jnp.dtype,
  param_dtype: jnp.dtype,
  zero_init: bool = False,
  name: str | None = None,
) -> nn.Dense:
  """Returns a Dense layer over the last axis, kernel `(EMBED, MLP)`, bias `(MLP,)`.

  Args:
    features: output width.
    dtype: compute dtype.
    param_dtype: storage dtype of kernel and bias.
    zero_init: start the kernel at zero, so a residual branch starts as identity.
    name: submodule name.
  """
  kernel_init = nn.initializers.zeros_init() if zero_init else nn.initializers.lecun_normal()
  return nn.Dense(
    features,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=nn.with_logical_partitioning(kernel_init, (EMBED, MLP)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (MLP,)),
    name=name,
  )
