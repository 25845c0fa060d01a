"""Spatiotemporal 3D UNet on the embedded bouncing-shapes videos (the default job).

Run (2 CPU cores, under 15 minutes):
  python train.py --config configs/bouncing_shapes_unet.py --workdir /tmp/jvdm_run
Variants (`--config configs/bouncing_shapes_unet.py:VARIANT`):
  default  the measured default run (README).
  long     the default recipe trained 9000 steps (about 80 minutes on 2 idle cores), scored on
           32 samples every 3000 steps: the learning curve (README; 3 of 32 valid).
  tiny     a few-second smoke config used by the tests.
Any field can be overridden, e.g. `--config.train.num_steps=500 --config.model.dtype=bfloat16`.
"""

import ml_collections

from jvdm.parallel import axes

VARIANTS = ("default", "long", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the config for `variant` ('default', 'long' or 'tiny')."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  # 'bouncing_shapes' (embedded, generated on the fly), 'video_folder' or 'tfds'.
  config.data.name = "bouncing_shapes"
  config.data.num_frames = 16
  config.data.height = 32
  config.data.width = 32
  config.data.channels = 3
  config.data.batch_size = 8  # global, across all processes and devices
  config.data.shuffle_seed = 0
  config.data.worker_count = 0  # grain worker processes; 0 = in the main process
  config.data.bouncing_shapes = ml_collections.ConfigDict(
    dict(
      num_videos=100_000,
      min_shapes=1,
      max_shapes=2,
      min_size=6,
      max_size=10,
      min_speed=1,
      max_speed=3,
      seed=0,
    )
  )
  config.data.video_folder = ml_collections.ConfigDict(dict(root="", frame_stride=1))
  # name='tfds': a dataset written by `python -m jvdm.data.prepare` (or any TFDS dataset with a
  # Tensor feature), read with tfds.data_source; feature 'video' (uint8 pixels) or 'latents'.
  # eval_split: held-out clips for evaluation ('' = none).
  config.data.tfds = ml_collections.ConfigDict(
    dict(name="", data_dir="", split="train", eval_split="", feature="video")
  )

  config.model = ml_collections.ConfigDict()
  config.model.name = "unet3d"
  # 4x4 space-to-depth stem: the UNet runs at 8x8 and 4x4 (on 2 CPU cores the full-resolution
  # convs of a patch-1 UNet cost 6 s a step; see docs/benchmarks.md).
  config.model.patch_size = 4
  config.model.base_channels = 48
  config.model.channel_mults = (1, 2)
  config.model.num_res_blocks = 1
  config.model.attention_levels = (0, 1)  # 0 = the first level (after the patch stem)
  config.model.middle_attention = "factorized"  # factorized | joint (all frames and pixels)
  config.model.level_attention = "factorized"  # the same, at attention_levels
  # Spatial and joint attention also rotate by row and column (3D RoPE), not only by frame.
  config.model.space_time_rope = False
  config.model.head_dim = 24
  config.model.num_groups = 8
  config.model.dropout = 0.0
  # Zero-initialized temporal convs suit inflating an image model, not training from scratch.
  config.model.identity_init_temporal = False
  config.model.dtype = "float32"  # compute dtype: float32 | bfloat16
  config.model.param_dtype = "float32"
  config.model.remat = False
  # None (XLA) | "cudnn" (GPU) | "chunked" (one head and one chunk of queries at a time:
  # faster on CPU for long sequences; the logged FLOPs then read low)
  config.model.attention_implementation = None
  config.model.causal_temporal_attention = False  # frames attend only to earlier frames
  # With patch_size > 1: width of a full-resolution head that sees the input pixels (0 = none).
  # Behind the 4x4 stem every output pixel is a linear map of a coarse token; with an 8-wide
  # head (36% slower steps), at 1000 steps and the same sampling, right sizes rose from 3% to
  # 56% of samples and squares from 19% to 53% (docs/quality.md).
  config.model.pixel_head_channels = 8

  config.diffusion = ml_collections.ConfigDict()
  config.diffusion.process = "vp"  # vp | edm (Karras, in sigma) | flow (rectified flow)
  # VP schedule: cosine (continuous, by log-SNR) | interpolated_cosine (SiD2: shift 0 at t=0
  # to logsnr_shift at t=1) | discrete (DDPM betas)
  config.diffusion.schedule = "cosine"
  config.diffusion.logsnr_min = -15.0
  config.diffusion.logsnr_max = 15.0
  # Shifted cosine (simple diffusion); < 0 trains and samples more at high noise, where a
  # video's layout and motion are decided.
  config.diffusion.logsnr_shift = -3.0
  # Used by schedule="discrete": DDPM betas by diffusers' names (linear | scaled_linear |
  # squaredcos_cap_v2), optionally rescaled to zero terminal SNR.
  config.diffusion.discrete = ml_collections.ConfigDict(
    dict(
      beta_schedule="linear",
      num_train_timesteps=1000,
      beta_start=0.0001,
      beta_end=0.02,
      rescale_zero_snr=False,
    )
  )
  # process="edm": sigma(t) = sigma_max * t^rho; Karras grids start at sigma_min.
  config.diffusion.edm = ml_collections.ConfigDict(dict(sigma_min=0.002, sigma_max=80.0, rho=7.0))
  # process="flow": SD3/Wan timestep shift, sigma = shift t / (1 + (shift - 1) t).
  config.diffusion.flow = ml_collections.ConfigDict(dict(shift=1.0))
  # v | eps | x0 | flow (velocity eps - x) | edm (F of EDM's preconditioning). This CPU config
  # predicts x0: behind the 4x4 patch stem, v-prediction must copy per-pixel noise through the
  # network, and after 1200 steps its samples kept a noisy background (x0 error at t=0.05 only
  # 1.6x below the trivial alpha*z), while x0-prediction gave clean backgrounds after 400. Set
  # "v" for larger patch-1 models.
  config.diffusion.prediction = "x0"
  # FVDM (Liu et al. 2024): the probability that a training video gets an independent noise
  # level per frame (0 = one level per video). Denoising a frame next to cleaner ones teaches
  # motion: at 400 steps, 1.0 gave 7 of 16 samples whose shapes never jumped, 0.5 gave 3 and
  # 0.0 gave none (README).
  config.diffusion.per_frame_noise = 1.0
  # The probability that a training video's per-frame levels are those of a staggered sampling
  # grid at a random progress and stagger (frame-by-frame generation; `staggered_times`).
  config.diffusion.staggered_noise = 0.0
  # uniform (MSE of the prediction) | snr | min_snr (Hang et al. 2023) | edm (Karras et al.)
  config.diffusion.loss_weighting = "uniform"
  config.diffusion.min_snr_gamma = 5.0
  # uniform | logit_normal (SD3's, sigmoid of N(logit_mean, logit_std^2))
  config.diffusion.time_sampling = "uniform"
  config.diffusion.logit_mean = 0.0
  config.diffusion.logit_std = 1.0
  # Frame-as-prompt training for causal models: up to this many leading frames kept clean and
  # unscored (0 = off).
  config.diffusion.context_frames = 0

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  config.optim.end_learning_rate_factor = 0.05  # cosine decays to lr * this
  config.optim.weight_decay = 0.0
  config.optim.b1 = 0.9
  config.optim.b2 = 0.99
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.995

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 1600
  config.train.log_every = 25
  config.train.checkpoint_every = 200
  config.train.keep_checkpoints = 3
  config.train.keep_checkpoint_every = 0  # also keep every checkpoint at a multiple of this
  config.train.sample_every = 0  # 0 = only at the end (a 400-step sample grid takes ~50 s)
  config.train.num_sample_videos = 8
  # Gradient accumulation: the batch runs as this many micro-batches inside the step.
  config.train.microbatches = 1
  # Steps with a NaN/inf loss or gradient are skipped (nothing applied); this many in a row
  # stop the run.
  config.train.max_consecutive_skipped = 10
  # Caption-conditioned models: the fraction of training videos shown the empty caption, so
  # the model also learns the unconditional path that classifier-free guidance needs.
  config.train.condition_dropout = 0.0

  config.sample = ml_collections.ConfigDict()
  # ddim | ddpm | euler | euler_ancestral | heun | dpmpp_2m | dpmpp_2m_sde | unipc | lcm |
  # flow_euler (jvdm.samplers.SOLVERS)
  # DDPM: its fresh noise at every step corrects drifting colours that DDIM keeps (README).
  config.sample.sampler = "ddpm"
  # uniform (in t) | linspace | leading | trailing | karras: diffusers' grids, same numbers.
  config.sample.spacing = "uniform"
  config.sample.steps_offset = 0  # diffusers' steps_offset, for "leading"
  # DDIM's last step ends at alpha_bar = 1 (True) or at alphas_cumprod[0] (diffusers' False)
  config.sample.set_alpha_to_one = True
  # spacing="uniform": each frame's time is t = level^time_power; > 1 crowds the steps near
  # clean data, where an x0-predicting model draws edges (samplers/driver.py).
  config.sample.time_power = 2.0
  config.sample.guidance_scale = 1.0  # classifier-free guidance; needs a conditional model
  config.sample.steps = 400
  config.sample.eta = 0.0
  config.sample.clip_x0 = True
  # 0 = every frame on the same time grid; in (0, 1) later frames lag (Diffusion Forcing's
  # pyramid schedule), for models trained with per-frame noise. 0.9: each frame's 40 steps
  # start when the previous frame is 60% done, so a new frame mostly copies and moves the
  # earlier ones while neighbours still settle their motion together; it kept colours in 97%
  # of the default run's samples (README).
  config.sample.frame_stagger = 0.9
  # Autoregressive generation with a KV cache (sample.py --chunks N; causal DiTs only): frames
  # per chunk, cached frames (sinks included) and sink frames kept for good.
  config.sample.chunk_frames = 4
  config.sample.cache_frames = 16
  config.sample.sink_frames = 0
  config.sample.fps = 8
  config.sample.video_scale = 4  # nearest-neighbour upscale of written mp4/gif

  config.mesh = ml_collections.ConfigDict()
  # Sizes of the mesh axes; -1 takes the remaining devices.
  config.mesh.shape = ml_collections.ConfigDict(
    {axes.DATA: -1, axes.FSDP: 1, axes.CONTEXT: 1, axes.TENSOR: 1}
  )
  # Sizes across slices (multi-slice TPU) or processes (multi-host GPU/CPU); each axis's size is
  # shape x dcn_shape. Put data parallelism here: only its gradient all-reduce crosses DCN.
  config.mesh.dcn_shape = ml_collections.ConfigDict(
    {axes.DATA: 1, axes.FSDP: 1, axes.CONTEXT: 1, axes.TENSOR: 1}
  )
  config.mesh.logical_axis_rules = axes.DEFAULT_RULES

  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
  if variant == "tiny":
    config.data.num_frames = 4
    config.data.height = 16
    config.data.width = 16
    config.data.batch_size = 8
    config.data.bouncing_shapes.min_size = 3
    config.data.bouncing_shapes.max_size = 5
    config.model.patch_size = 1
    config.model.pixel_head_channels = 0  # patch 1 is full resolution already
    config.model.base_channels = 16
    # One level, attention in the middle block only: half the compile time of two levels with
    # attention (the tests compile this step many times; tests/models cover the full UNet).
    config.model.channel_mults = (1,)
    config.model.attention_levels = ()
    config.model.head_dim = 16
    config.model.num_groups = 4
    config.optim.warmup_steps = 1
    config.train.num_steps = 4
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.sample_every = 0
    config.train.num_sample_videos = 2
    config.sample.steps = 4
    # A few steps need every frame on them: the default stagger gives each frame 1 / 20 of them.
    config.sample.sampler = "ddim"
    config.sample.frame_stagger = 0.8
    config.sample.time_power = 1.0
    config.sample.video_scale = 1
  elif variant == "long":
    config.train.num_steps = 9000
    config.train.sample_every = 3000
    config.train.num_sample_videos = 32
    config.train.keep_checkpoint_every = 3000
  config.lock()  # unknown keys are errors
  return config
