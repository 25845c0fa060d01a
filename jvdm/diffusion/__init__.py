"""Diffusion math, independent of any network: schedules, processes, predictions, losses."""

import functools
from typing import Callable

from jvdm.diffusion.edm import EDMProcess
from jvdm.diffusion.flow import FlowProcess
from jvdm.diffusion.loss import diffusion_loss
from jvdm.diffusion.parameterization import PREDICTIONS, x0_from_prediction, target_for_prediction
from jvdm.diffusion.schedules import SCHEDULES, get_schedule
from jvdm.diffusion.vp import VPProcess, broadcast_to_video
from jvdm.diffusion.weighting import LOSS_WEIGHTINGS, TIME_SAMPLINGS
from jvdm.errors import ConfigError

PROCESSES = ("vp", "edm", "flow")
Process = VPProcess | EDMProcess | FlowProcess


def make_process(diffusion_config) -> Process:
  """The process described by `config.diffusion` (`process`, and its own sub-config)."""
  name = diffusion_config.process
  if name not in PROCESSES:
    raise ConfigError(f"Unknown process {name!r}; valid processes: {list(PROCESSES)}.")
  if name == "edm":
    return EDMProcess(**diffusion_config.edm.to_dict())
  if name == "flow":
    return FlowProcess(**diffusion_config.flow.to_dict())
  if diffusion_config.schedule == "discrete":
    kwargs = diffusion_config.discrete.to_dict()
  elif diffusion_config.schedule == "interpolated_cosine":
    kwargs = dict(
      logsnr_min=diffusion_config.logsnr_min,
      logsnr_max=diffusion_config.logsnr_max,
      shift_start=0.0,
      shift_end=diffusion_config.logsnr_shift,
    )
  else:
    kwargs = dict(
      logsnr_min=diffusion_config.logsnr_min,
      logsnr_max=diffusion_config.logsnr_max,
      logsnr_shift=diffusion_config.logsnr_shift,
    )
  return VPProcess(get_schedule(diffusion_config.schedule, **kwargs))


def make_loss(diffusion_config) -> Callable:
  """`loss(network, videos, rng) -> scalar` as `config.diffusion` describes it."""
  return functools.partial(
    diffusion_loss,
    process=make_process(diffusion_config),
    prediction=diffusion_config.prediction,
    per_frame_noise=diffusion_config.per_frame_noise,
    weighting=diffusion_config.loss_weighting,
    min_snr_gamma=diffusion_config.min_snr_gamma,
    time_sampling=diffusion_config.time_sampling,
    logit_mean=diffusion_config.logit_mean,
    logit_std=diffusion_config.logit_std,
    context_frames=diffusion_config.context_frames,
    staggered_noise=diffusion_config.staggered_noise,
  )
