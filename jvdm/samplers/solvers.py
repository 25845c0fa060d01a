"""The solvers by name: DDIM, DDPM, Euler, Euler ancestral, Heun, DPM-Solver++ 2M (and SDE),
UniPC, LCM and flow-matching Euler, each a one-step update for the `lax.scan` driver.

DDPM is DDIM with eta 1 (Song et al. 2021, eq. 16: eta 1 is the DDPM posterior), Euler is DDIM
with eta 0 in the (sigma, x) coordinates Karras et al. 2022 use (the same update), and Euler
ancestral is DDIM with eta 1 on Euler's grids; they differ in their diffusers time grids
(`jvdm.samplers.grids`).
"""

from jvdm.samplers.ddim import ddim_step
from jvdm.samplers.dpm_solver import dpm_solver_2m_step
from jvdm.samplers.heun import heun_step
from jvdm.samplers.lcm import lcm_step
from jvdm.samplers.unipc import unipc_step

# name -> (solver factory `(denoise, process, eta, clip_x0) -> Solver`, the diffusers grid rule
# of its `spacing`, see jvdm.samplers.grids).
SOLVERS = {
  "ddim": (lambda d, p, eta, clip: ddim_step(d, p, eta, clip), "ddim"),
  "ddpm": (lambda d, p, eta, clip: ddim_step(d, p, 1.0, clip), "ddim"),
  "euler": (lambda d, p, eta, clip: ddim_step(d, p, 0.0, clip), "euler"),
  "euler_ancestral": (lambda d, p, eta, clip: ddim_step(d, p, 1.0, clip), "euler"),
  "heun": (lambda d, p, eta, clip: heun_step(d, p, clip), "euler"),
  "dpmpp_2m": (lambda d, p, eta, clip: dpm_solver_2m_step(d, p, False, clip), "multistep"),
  "dpmpp_2m_sde": (lambda d, p, eta, clip: dpm_solver_2m_step(d, p, True, clip), "multistep"),
  "unipc": (lambda d, p, eta, clip: unipc_step(d, p, "bh2", clip), "multistep"),
  "lcm": (lambda d, p, eta, clip: lcm_step(d, p, clip_x0=clip), "lcm"),
  "flow_euler": (lambda d, p, eta, clip: ddim_step(d, p, 0.0, clip), "flow"),
}
SAMPLERS = tuple(SOLVERS)
