"""Samplers: one-step solvers driven by a single `lax.scan` over a timestep grid."""

from jvdm.samplers.ddim import ddim_step
from jvdm.samplers.denoiser import make_denoiser
from jvdm.samplers.driver import SamplerCarry, run_solver, uniform_time_grid
from jvdm.samplers.video_sampler import SAMPLERS, VideoSampler
