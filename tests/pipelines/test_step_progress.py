"""The per-step progress bar of `VideoSampler.sample`: the jitted scan reports every solver
step of every batch, once per step even on 8 devices, and a staggered grid counts its own
steps; the samples do not change."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jvdm.diffusion import VPProcess, get_schedule
from jvdm.pipelines import VideoSampler


def _sampler(**settings):
  zero = lambda variables, x, t: jnp.zeros_like(x)  # an x0 network: the data's mean
  return VideoSampler(zero, VPProcess(get_schedule("cosine")), "x0", num_steps=7, **settings)


def _reported(sampler, capsys, **call):
  seen = []
  original = type(sampler.step_progress).__call__

  def record(progress, steps_done):
    seen.append(int(steps_done))
    original(progress, steps_done)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(type(sampler.step_progress), "__call__", record)
    videos = sampler.sample({}, 0, video_shape=(3, 4, 4, 1), **call)
  return videos, seen, capsys.readouterr().err


@pytest.mark.parametrize("settings, steps", [({}, 7), ({"frame_stagger": 0.5}, None)])
def test_the_bar_counts_every_step_of_every_batch(capsys, settings, steps):
  sampler = _sampler(**settings)
  steps = steps or sampler.num_solver_steps(3)
  videos, seen, err = _reported(sampler, capsys, num_videos=3, batch_size=2)
  assert seen == list(range(1, steps + 1)) * 2  # two batches
  assert f"{2 * steps}/{2 * steps}" in err and "denoising" in err
  quiet = _sampler(**settings).sample({}, 0, 3, (3, 4, 4, 1), batch_size=2, progress=False)
  np.testing.assert_array_equal(videos, quiet)
  assert "denoising" not in capsys.readouterr().err


def test_a_sharded_batch_reports_each_step_once_on_the_bar(capsys):
  mesh = jax.make_mesh((8,), ("data",))
  sampler = _sampler()
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  keys = jax.device_put(jax.random.split(jax.random.key(0), 8), sharding)
  with sampler.step_progress.showing(7):
    jax.block_until_ready(sampler.jitted_sample_batch({}, keys, None, (3, 4, 4, 1)))
    jax.effects_barrier()
    assert sampler.step_progress.bar.n == 7  # set, not added, whatever the devices report
