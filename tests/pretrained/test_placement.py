"""The host-side helpers of `jvdm.pretrained.placement`: aligned param buffers (which XLA's
CPU client takes without a copy)."""

import ml_dtypes
import numpy as np
import pytest

from jvdm.pretrained.placement import _ALIGNMENT, _aligned_empty


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.int8])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (24, 3, 2, 12)])
def test_buffers_are_aligned_with_their_shape_and_dtype(shape, dtype):
  for _ in range(4):  # numpy's own allocations are often only 16-byte aligned
    buffer = _aligned_empty(shape, dtype)
    assert buffer.ctypes.data % _ALIGNMENT == 0
    assert buffer.shape == shape and buffer.dtype == np.dtype(dtype)
    assert buffer.flags.c_contiguous and buffer.flags.writeable
