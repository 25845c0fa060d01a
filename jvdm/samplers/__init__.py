"""Model-agnostic samplers: one-step solvers, time grids, guidance and denoiser wrappers, driven
by a single `lax.scan` over a timestep grid. Model-aware generation is in `jvdm.pipelines`."""

from jvdm.samplers.ddim import ddim_step
from jvdm.samplers.denoiser import make_denoiser
from jvdm.samplers.dpm_solver import dpm_solver_2m_step
from jvdm.samplers.driver import SamplerCarry, Solver, run_solver, uniform_time_grid
from jvdm.samplers.grids import SPACINGS, sampling_time_grid
from jvdm.samplers.guidance import (
  classifier_free_guidance,
  dual_guidance,
  frame_guidance_ramp,
  rescale_guidance,
)
from jvdm.samplers.heun import heun_step
from jvdm.samplers.lcm import lcm_step
from jvdm.samplers.unipc import unipc_step
from jvdm.samplers.solvers import SAMPLERS, SOLVERS
