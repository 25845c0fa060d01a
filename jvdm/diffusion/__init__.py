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
