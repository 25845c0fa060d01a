"""Diffusion math, independent of any network: schedules, the VP process, predictions, losses."""

from jvdm.diffusion.loss import diffusion_loss
from jvdm.diffusion.parameterization import PREDICTIONS, x0_from_prediction, target_for_prediction
from jvdm.diffusion.schedules import SCHEDULES, get_schedule
from jvdm.diffusion.vp import VPProcess, broadcast_to_video


def make_process(diffusion_config) -> VPProcess:
  """The VP process described by `config.diffusion`."""
  if diffusion_config.schedule == "discrete":
    kwargs = diffusion_config.discrete.to_dict()
  else:
    kwargs = dict(logsnr_min=diffusion_config.logsnr_min, logsnr_max=diffusion_config.logsnr_max,
                  logsnr_shift=diffusion_config.logsnr_shift)
  return VPProcess(get_schedule(diffusion_config.schedule, **kwargs))
