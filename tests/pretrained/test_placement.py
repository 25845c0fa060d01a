"""The host-side helpers of `jvdm.pretrained.placement`: aligned param buffers (which XLA's
CPU client takes without a copy) and the banded copy of transposed tensors."""

import ml_dtypes
import numpy as np
import pytest

from jvdm.pretrained.placement import _ALIGNMENT, _aligned_empty, _write


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.int8])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (24, 3, 2, 12)])
def test_buffers_are_aligned_with_their_shape_and_dtype(shape, dtype):
  for _ in range(4):  # numpy's own allocations are often only 16-byte aligned
    buffer = _aligned_empty(shape, dtype)
    assert buffer.ctypes.data % _ALIGNMENT == 0
    assert buffer.shape == shape and buffer.dtype == np.dtype(dtype)
    assert buffer.flags.c_contiguous and buffer.flags.writeable


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_a_transposed_source_is_copied_exactly_in_bands(dtype):
  rng = np.random.default_rng(0)
  weight = rng.standard_normal((200, 150)).astype(dtype)  # a Linear weight [out, in]
  kernel = np.zeros((150, 200), dtype)
  _write(kernel, weight.T)  # 200 columns: three whole bands of 64 and a partial one
  np.testing.assert_array_equal(kernel, weight.T)
  # one part of a fused [in, 3, heads, head_dim] kernel, the source split into heads
  fused = np.zeros((150, 3, 4, 50), np.float32)
  _write(fused[:, 1], weight.T.reshape(150, 4, 50))
  np.testing.assert_array_equal(fused[:, 1], weight.T.reshape(150, 4, 50).astype(np.float32))
  assert not fused[:, 0].any() and not fused[:, 2].any()
