"""Chunked attention (one head and one chunk of queries at a time) equals
`jax.nn.dot_product_attention`, values and gradients, with every mask jvdm builds, and runs
when asked (`implementation="chunked"`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.errors import ConfigError
from jvdm.parallel import context_attention
from jvdm.parallel.context_attention import attention, chunked_attention

LQ, LK = 21, 20  # with CHUNK_LOGITS = 64: chunks of 8 queries, the last one padded


def _inputs(dtype=jnp.float32):
  q = jax.random.normal(jax.random.key(0), (2, LQ, 3, 8), dtype)
  k, v = jax.random.normal(jax.random.key(1), (2, 2, LK, 3, 8), dtype)
  return q, k, v


MASKS = {
  "none": None,
  "rows": jnp.tril(jnp.ones((LQ, LK), bool), k=-1)[None, None],  # the first row sees nothing
  "padding": jnp.arange(LK)[None, None, None, :] < jnp.array([LK, 13])[:, None, None, None],
}
MASKS["rows_and_padding"] = MASKS["rows"] & MASKS["padding"]


@pytest.mark.parametrize("mask", list(MASKS))
def test_values_and_gradients_equal_the_whole_kernel(monkeypatch, mask):
  monkeypatch.setattr(context_attention, "CHUNK_LOGITS", 64)
  q, k, v = _inputs()
  cotangent = jax.random.normal(jax.random.key(2), q.shape)
  loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v, mask=MASKS[mask]) * cotangent)
  expected = jax.jit(jax.value_and_grad(loss(jax.nn.dot_product_attention), (0, 1, 2)))(q, k, v)
  got = jax.jit(jax.value_and_grad(loss(chunked_attention), (0, 1, 2)))(q, k, v)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_bfloat16_equals_the_whole_kernel(monkeypatch):
  monkeypatch.setattr(context_attention, "CHUNK_LOGITS", 64)
  q, k, v = _inputs(jnp.bfloat16)
  got = jax.jit(chunked_attention)(q, k, v, MASKS["rows_and_padding"])
  expected = jax.nn.dot_product_attention(q, k, v, mask=MASKS["rows_and_padding"])
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(got, np.float32), np.asarray(expected, np.float32), atol=1e-2, rtol=1e-2
  )


def _runs_chunked(implementation) -> bool:
  q, k, v = _inputs()
  jaxpr = jax.make_jaxpr(lambda q, k, v: attention(q, k, v, implementation=implementation))
  return "scan" in str(jaxpr(q, k, v))


def test_chunked_attention_runs_when_asked(monkeypatch):
  monkeypatch.setattr(context_attention, "CHUNK_LOGITS", 64)
  assert _runs_chunked("chunked")
  assert not _runs_chunked(None) and not _runs_chunked("xla")
  with pytest.raises(ConfigError, match="'flash'"):
    _runs_chunked("flash")
