"""Tests for the spatiotemporal UNet (jvdm.models.unet3d) on tiny configs."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jvdm.builders import get_model
from jvdm.errors import ConfigError, ShapeError
from jvdm.models import UNet3D
from jvdm.models.layers import apply_rope, conv2d
from jvdm.models.layers.rope import rope_3d
from jvdm.models.layers.attention import VideoSelfAttention
from jvdm.parallel import axes

BATCH, FRAMES, SIZE, CHANNELS = 2, 8, 16, 3


def make_config(**model_overrides) -> ml_collections.ConfigDict:
  model = dict(
    name="unet3d",
    patch_size=1,
    base_channels=16,
    channel_mults=(1, 2),
    num_res_blocks=1,
    attention_levels=(1,),
    middle_attention="factorized",
    level_attention="factorized",
    space_time_rope=False,
    causal_temporal_attention=False,
    pixel_head_channels=0,
    head_dim=16,
    num_groups=4,
    dropout=0.0,
    # Zero temporal convs: the frame-independence tests below perturb all but them.
    identity_init_temporal=True,
    dtype="float32",
    param_dtype="float32",
    remat=False,
    attention_implementation=None,
  )
  model.update(model_overrides)
  data = dict(channels=CHANNELS, num_frames=FRAMES, height=SIZE, width=SIZE)
  return ml_collections.ConfigDict({"model": model, "data": data})


def make_video(key, num_frames=FRAMES, size=SIZE):
  return jax.random.normal(key, (BATCH, num_frames, size, size, CHANNELS))


def perturb(params, seed, scale=0.2, keep=lambda path: False):
  """Adds noise to every param whose path `keep` rejects, so zero-init layers come alive."""
  rng = np.random.default_rng(seed)

  def perturb_leaf(path, leaf):
    name = "/".join(str(getattr(p, "key", p)) for p in path)
    if keep(name):
      return leaf
    return leaf + scale * rng.standard_normal(leaf.shape).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(perturb_leaf, params)


def is_temporal(path: str) -> bool:
  """Temporal convs and temporal attention: the only layers that mix frames."""
  return "temporal" in path


@pytest.fixture(scope="module")
def model():
  return get_model(make_config())


@pytest.fixture(scope="module")
def params(model):
  x = make_video(jax.random.key(0))
  t = jnp.full((BATCH,), 0.5)
  # An "rbg" key compiles init about twice as fast as the default threefry on CPU.
  variables = jax.jit(model.init)({"params": jax.random.key(1, impl="rbg")}, x, t)
  return nn.unbox(variables["params"])


@pytest.fixture(scope="module")
def apply(model):
  @jax.jit
  @chex.assert_max_traces(n=4)
  def apply_fn(params, x, t):
    return model.apply({"params": params}, x, t)

  return apply_fn


@pytest.fixture(scope="module")
def live_params(params):
  """Every param perturbed: temporal and output layers no longer zero."""
  return perturb(params, seed=2)


@pytest.fixture(scope="module")
def frame_independent_params(params):
  """All but the temporal layers perturbed; temporal layers keep their zero init."""
  return perturb(params, seed=3, keep=is_temporal)


def test_get_model_returns_unet3d(model):
  assert isinstance(model, UNet3D)
  assert model.channel_mults == (1, 2) and model.out_channels == CHANNELS


@pytest.mark.parametrize("t_shape", [(BATCH,), (BATCH, FRAMES)])
def test_output_shape_and_dtype(apply, live_params, t_shape):
  x = make_video(jax.random.key(4))
  t = jax.random.uniform(jax.random.key(5), t_shape)
  out = apply(live_params, x, t)
  assert out.shape == x.shape
  assert out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))


def test_output_is_zero_at_init(apply, params):
  x = make_video(jax.random.key(4))
  out = apply(params, x, jnp.full((BATCH,), 0.3))
  np.testing.assert_array_equal(out, 0.0)


def test_batch_time_equals_repeated_frame_time(apply, live_params):
  x = make_video(jax.random.key(6))
  t = jnp.array([0.1, 0.7])
  out_batch = apply(live_params, x, t)
  out_frames = apply(live_params, x, jnp.repeat(t[:, None], FRAMES, axis=1))
  np.testing.assert_allclose(out_batch, out_frames, rtol=1e-5, atol=1e-5)
  # Different times must give different outputs, or the check above proves nothing.
  out_other = apply(live_params, x, t + 0.2)
  assert float(jnp.max(jnp.abs(out_other - out_batch))) > 1e-3


def test_frame_time_acts_on_its_own_frame(apply, frame_independent_params):
  # With temporal layers at zero, frames are independent: changing frame j's time must
  # change frame j's output and leave every other frame's output untouched.
  x = make_video(jax.random.key(7))
  t = jnp.full((BATCH, FRAMES), 0.5)
  j = 3
  out = apply(frame_independent_params, x, t)
  out_changed = apply(frame_independent_params, x, t.at[:, j].set(0.9))
  diff = jnp.max(jnp.abs(out_changed - out), axis=(2, 3, 4))  # [B, T]
  assert float(jnp.min(diff[:, j])) > 1e-3
  np.testing.assert_allclose(np.delete(np.asarray(diff), j, axis=1), 0.0, atol=1e-6)


def test_frames_are_independent_without_temporal_layers(apply, frame_independent_params):
  x = make_video(jax.random.key(8))
  t = jnp.full((BATCH,), 0.5)
  out = apply(frame_independent_params, x, t)
  out_changed = apply(frame_independent_params, x.at[:, 0].add(1.0), t)
  np.testing.assert_allclose(out_changed[:, 1:], out[:, 1:], atol=1e-6)


def test_temporal_layers_mix_frames(apply, live_params):
  x = make_video(jax.random.key(8))
  t = jnp.full((BATCH,), 0.5)
  out = apply(live_params, x, t)
  out_changed = apply(live_params, x.at[:, 0].add(1.0), t)
  diff = jnp.max(jnp.abs(out_changed - out), axis=(0, 2, 3, 4))  # [T]
  assert float(jnp.min(diff[1:])) > 1e-4, diff  # every other frame, even the last, moves


def test_joint_middle_attention_mixes_frames_alone():
  model = get_model(make_config(middle_attention="joint"))
  x = make_video(jax.random.key(8))
  t = jnp.full((BATCH,), 0.5)
  params = nn.unbox(jax.jit(model.init)({"params": jax.random.key(1, impl="rbg")}, x, t)["params"])
  assert "middle_joint_attention" in params and "middle_temporal_attention" not in params
  # Temporal convs and temporal attention stay zero: only the joint attention mixes frames.
  alive = perturb(params, seed=4, keep=is_temporal)
  apply = jax.jit(model.apply)
  out = apply({"params": alive}, x, t)
  out_changed = apply({"params": alive}, x.at[:, 0].add(1.0), t)
  diff = jnp.max(jnp.abs(out_changed - out), axis=(0, 2, 3, 4))  # [T]
  assert float(jnp.min(diff[1:])) > 1e-4, diff


def test_temporal_convs_start_random_unless_identity_init():
  x = make_video(jax.random.key(0))
  t = jnp.full((BATCH,), 0.5)
  for identity, expect_zero in ((True, True), (False, False)):
    model = get_model(make_config(identity_init_temporal=identity))
    params = nn.unbox(
      jax.jit(model.init)({"params": jax.random.key(1, impl="rbg")}, x, t)["params"]
    )
    kernel = params["down_0_res_0"]["conv_0"]["temporal"]["conv"]["kernel"]
    assert bool(jnp.all(kernel == 0)) == expect_zero


def test_temporal_attention_knows_frame_order(apply, params):
  # Only temporal attention (and per-frame layers) alive: without positions attention would
  # be permutation-equivariant over frames, so reversing the input would reverse the output.
  alive = perturb(params, seed=9, keep=lambda path: "temporal" in path and "attention" not in path)
  x = make_video(jax.random.key(10))
  t = jnp.full((BATCH,), 0.5)
  out = apply(alive, x, t)
  out_reversed = apply(alive, x[:, ::-1], t)[:, ::-1]
  assert float(jnp.max(jnp.abs(out_reversed - out))) > 1e-3


def test_rope_logits_depend_only_on_offsets():
  q = jax.random.normal(jax.random.key(11), (1, 6, 2, 8))
  k = jax.random.normal(jax.random.key(12), (1, 6, 2, 8))
  positions = jnp.arange(6)
  logits = jnp.einsum("blnd,bmnd->bnlm", apply_rope(q, positions), apply_rope(k, positions))
  shifted = jnp.einsum(
    "blnd,bmnd->bnlm", apply_rope(q, positions + 5), apply_rope(k, positions + 5)
  )
  np.testing.assert_allclose(logits, shifted, rtol=1e-4, atol=1e-4)


def test_rope_3d_logits_depend_only_on_space_time_offsets():
  q = jax.random.normal(jax.random.key(11), (1, 10, 2, 12))
  k = jax.random.normal(jax.random.key(12), (1, 10, 2, 12))
  frame, row, col = (jax.random.randint(jax.random.key(13 + i), (10,), 0, 8) for i in range(3))

  def logits(frame, row, col):
    return jnp.einsum("blnd,bmnd->bnlm", rope_3d(q, frame, row, col), rope_3d(k, frame, row, col))

  np.testing.assert_allclose(
    logits(frame, row, col), logits(frame + 3, row + 5, col + 7), rtol=1e-4, atol=1e-4
  )
  # Each coordinate matters: moving one token along any one axis changes its logits.
  for moved in (
    (frame.at[0].add(2), row, col),
    (frame, row.at[0].add(2), col),
    (frame, row, col.at[0].add(2)),
  ):
    assert float(jnp.max(jnp.abs(logits(*moved) - logits(frame, row, col)))) > 1e-2


def _live_attention(axis, space_time_rope, x):
  layer = VideoSelfAttention(axis, head_dim=8, num_groups=2, space_time_rope=space_time_rope)
  params = nn.unbox(layer.init(jax.random.key(1), x)["params"])
  # The output projection starts at zero (identity block); give it weights.
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
  return lambda video: layer.apply({"params": params}, video)


@pytest.mark.parametrize("axis", ["spatial", "joint"])
def test_space_time_rope_gives_attention_positions_in_space(axis):
  x = jax.random.normal(jax.random.key(0), (1, 3, 4, 4, 16))
  flip = lambda video: video[:, :, ::-1, ::-1]
  # Without positions in space, attention is equivariant to permuting the pixels of every
  # frame alike; with them, the offsets between pixels change under a flip.
  plain = _live_attention(axis, False, x)
  np.testing.assert_allclose(flip(plain(flip(x))), plain(x), atol=1e-5)
  positioned = _live_attention(axis, True, x)
  assert float(jnp.max(jnp.abs(flip(positioned(flip(x))) - positioned(x)))) > 1e-3


def test_space_time_rope_leaves_temporal_attention_as_it_was():
  x = jax.random.normal(jax.random.key(0), (1, 5, 4, 4, 16))
  np.testing.assert_array_equal(
    _live_attention("temporal", True, x)(x), _live_attention("temporal", False, x)(x)
  )


def test_level_attention_joint_replaces_factorized_blocks():
  model = get_model(make_config(level_attention="joint", space_time_rope=True))
  params = jax.eval_shape(
    model.init, jax.random.key(0), make_video(jax.random.key(1)), jnp.zeros((BATCH,))
  )["params"]
  assert "down_1_0_joint_attention" in params and "up_1_0_joint_attention" in params
  factorized = [name for name in params if "spatial" in name or "temporal_attention" in name]
  # The middle block keeps its own setting (middle_attention="factorized").
  assert factorized == ["middle_spatial_attention", "middle_temporal_attention"], factorized


@pytest.mark.parametrize("strides", [1, 2])
def test_conv2d_derivatives_match_xla_conv(strides):
  # conv2d swaps in its own kernel tangent on CPU; every derivative must stay exact.
  x = jax.random.normal(jax.random.key(20), (2, 8, 8, 4))
  kernel = jax.random.normal(jax.random.key(21), (3, 3, 4, 5))

  def reference(x, kernel):
    return jax.lax.conv_general_dilated(
      x, kernel, (strides, strides), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )

  def loss(conv):
    return lambda x, kernel: jnp.sum(jnp.sin(conv(x, kernel)))

  conv = lambda x, kernel: conv2d(x, kernel, strides)
  np.testing.assert_allclose(conv(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
  grads = jax.jit(jax.grad(loss(conv), argnums=(0, 1)))(x, kernel)
  expected = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
  chex.assert_trees_all_close(grads, expected, rtol=1e-4, atol=1e-4)
  tangent = jax.jvp(conv, (x, kernel), (x, kernel))[1]
  np.testing.assert_allclose(tangent, jax.jvp(reference, (x, kernel), (x, kernel))[1], atol=1e-4)


@pytest.mark.parametrize("num_frames", [3, 12])
def test_other_frame_count_at_apply(model, live_params, num_frames):
  x = make_video(jax.random.key(13), num_frames=num_frames)
  t = jax.random.uniform(jax.random.key(14), (BATCH, num_frames))
  out = jax.jit(model.apply)({"params": live_params}, x, t)
  assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))


def test_bfloat16_compute(live_params, apply):
  model = get_model(make_config(dtype="bfloat16"))
  x = make_video(jax.random.key(15))
  t = jnp.full((BATCH,), 0.5)
  abstract = jax.eval_shape(model.init, {"params": jax.random.key(1)}, x, t)
  param_dtypes = {p.dtype for p in jax.tree.leaves(nn.unbox(abstract["params"]))}
  assert param_dtypes == {jnp.dtype(jnp.float32)}  # storage stays float32
  out = jax.jit(model.apply)({"params": live_params}, x, t)
  assert out.dtype == jnp.float32
  reference = apply(live_params, x, t)
  relative_error = jnp.linalg.norm(out - reference) / jnp.linalg.norm(reference)
  assert float(relative_error) < 0.05


def random_params(model, x, t, seed):
  """Random params of `model`'s shapes, made without compiling `model.init`."""
  abstract = nn.unbox(jax.eval_shape(model.init, {"params": jax.random.key(0)}, x, t)["params"])
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.2 * rng.standard_normal(a.shape), a.dtype), abstract)


def test_remat_matches_no_remat():
  # One level (middle attention only) keeps the two gradient compiles short.
  overrides = dict(channel_mults=(1,), attention_levels=())
  x = make_video(jax.random.key(16))
  t = jax.random.uniform(jax.random.key(17), (BATCH, FRAMES))
  params = random_params(get_model(make_config(**overrides)), x, t, seed=4)

  def loss_and_grad(remat):
    model = get_model(make_config(remat=remat, **overrides))
    loss = lambda p: jnp.mean(model.apply({"params": p}, x, t, train=True) ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)

  loss_plain, grads_plain = loss_and_grad(False)
  loss_remat, grads_remat = loss_and_grad(True)
  np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-5)
  chex.assert_trees_all_close(grads_remat, grads_plain, rtol=1e-4, atol=1e-6)


def test_dropout_only_in_train(apply, live_params):
  model = get_model(make_config(dropout=0.5))
  x = make_video(jax.random.key(18))
  t = jnp.full((BATCH,), 0.5)
  train_apply = jax.jit(
    lambda p, x, t, key: model.apply({"params": p}, x, t, train=True, rngs={"dropout": key})
  )
  train_out = train_apply(live_params, x, t, jax.random.key(0))
  eval_out = apply(live_params, x, t)  # train=False by default: no dropout, no rng needed
  assert float(jnp.max(jnp.abs(train_out - eval_out))) > 1e-3


def test_params_carry_logical_partitioning(model):
  x = make_video(jax.random.key(0))
  variables = jax.eval_shape(model.init, {"params": jax.random.key(1)}, x, jnp.zeros((BATCH,)))
  boxed = jax.tree.leaves(
    variables["params"], is_leaf=lambda leaf: isinstance(leaf, nn.LogicallyPartitioned)
  )
  assert all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in boxed)
  specs = nn.get_partition_spec(variables)["params"]
  assert tuple(specs["conv_in"]["kernel"]) == (
    axes.CONV_HEIGHT,
    axes.CONV_WIDTH,
    axes.EMBED,
    axes.MLP,
  )
  temporal = specs["down_0_res_0"]["conv_0"]["temporal"]["conv"]["kernel"]
  assert tuple(temporal) == (axes.CONV_TEMPORAL, axes.EMBED, axes.MLP)
  assert tuple(specs["down_0_res_0"]["norm_0"]["scale"]) == (axes.NORM,)


def test_runs_under_mesh_with_logical_rules(model, live_params):
  devices = np.array(jax.devices()[:1]).reshape(1, 1, 1, 1)
  mesh = jax.sharding.Mesh(devices, axes.MESH_AXES)
  x = make_video(jax.random.key(0))
  t = jnp.full((BATCH,), 0.5)
  with jax.set_mesh(mesh), nn.logical_axis_rules(axes.DEFAULT_RULES):
    abstract = jax.eval_shape(model.init, {"params": jax.random.key(1)}, x, t)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh)
    sharded_params = jax.device_put(live_params, shardings["params"])
    out = jax.jit(model.apply)({"params": sharded_params}, x, t)
  assert out.shape == x.shape


# Bad inputs.


def test_rejects_4d_video(model, params):
  x = jnp.zeros((BATCH, SIZE, SIZE, CHANNELS))
  with pytest.raises(ShapeError, match=r"\[B, T, H, W, C\]"):
    model.apply({"params": params}, x, jnp.zeros((BATCH,)))


@pytest.mark.parametrize("t_shape", [(BATCH + 1,), (BATCH, FRAMES + 1), (BATCH, FRAMES, 1), ()])
def test_rejects_bad_time_shape(model, params, t_shape):
  with pytest.raises(ShapeError, match="t must have shape"):
    model.apply({"params": params}, make_video(jax.random.key(0)), jnp.zeros(t_shape))


def test_rejects_size_not_divisible(model, params):
  x = jnp.zeros((BATCH, FRAMES, 15, SIZE, CHANNELS))
  with pytest.raises(ShapeError, match="divisible by"):
    model.apply({"params": params}, x, jnp.zeros((BATCH,)))


def test_patch_size_keeps_the_video_shape_and_checks_divisibility():
  model = get_model(make_config(patch_size=2))
  x = make_video(jax.random.key(0))
  params = jax.jit(model.init)(jax.random.key(1), x, jnp.zeros((BATCH,)))["params"]
  assert params["conv_in"]["kernel"].value.shape[-2] == 4 * CHANNELS  # 2x2 patches of RGB
  assert jax.jit(model.apply)({"params": params}, x, jnp.zeros((BATCH,))).shape == x.shape
  with pytest.raises(ShapeError, match="patch_size 2"):
    jax.jit(model.apply)(
      {"params": params}, jnp.zeros((BATCH, FRAMES, 18, SIZE, CHANNELS)), jnp.zeros((BATCH,))
    )


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(head_dim=24), "head_dim=24"),
    (dict(num_groups=5), "num_groups=5"),
    (dict(attention_levels=(2,)), "attention_levels"),
    (dict(middle_attention="global"), "middle_attention"),
    (dict(level_attention="axial"), "level_attention"),
    (dict(name="unet4d"), "unknown model.name 'unet4d'"),
    (dict(dtype="int8"), "model.dtype"),
    (dict(param_dtype="float33"), "model.param_dtype"),
  ],
)
def test_rejects_bad_config(overrides, message):
  with pytest.raises(ConfigError, match=message):
    get_model(make_config(**overrides))


@pytest.mark.parametrize("axis", ["temporal", "joint"])
def test_causal_attention_ignores_later_frames(axis):
  layer = VideoSelfAttention(axis, head_dim=8, num_groups=2, causal=True)
  x = jax.random.normal(jax.random.key(0), (1, 5, 4, 4, 16))
  params = nn.unbox(layer.init(jax.random.key(1), x)["params"])
  # The output projection starts at zero (identity block); give it weights.
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
  apply = jax.jit(layer.apply)
  out = apply({"params": params}, x)
  changed = apply({"params": params}, x.at[:, 3:].add(1.0))
  np.testing.assert_allclose(out[:, :3], changed[:, :3], atol=1e-5)
  assert np.abs(out[:, 3:] - changed[:, 3:]).max() > 1e-2


def test_pixel_head_runs_at_full_resolution_on_the_input_pixels():
  kwargs = dict(
    patch_size=4,
    base_channels=16,
    channel_mults=(1,),
    attention_levels=(),
    head_dim=16,
    num_groups=4,
  )
  x = jax.random.normal(jax.random.key(0), (1, 2, 8, 8, 3))
  t = jnp.full((1,), 0.3)
  head = UNet3D(pixel_head_channels=8, **kwargs)
  params = nn.unbox(head.init(jax.random.key(1), x, t))["params"]
  # The head's first conv takes 8 unpatchified feature channels plus the 3 input channels.
  assert params["pixel_head_in"]["kernel"].shape == (3, 3, 8 + 3, 8)
  assert params["conv_to_pixels"]["kernel"].shape[-1] == 8 * 4 * 4
  assert params["conv_out"]["kernel"].shape[-1] == 3  # per pixel, not per 4x4 patch
  out = head.apply({"params": params}, x, t)
  assert out.shape == x.shape and not np.any(out)  # zero-initialized output, as without it
  with pytest.raises(ConfigError, match="pixel_head_channels must be 0 .*num_groups=4, got 6"):
    UNet3D(pixel_head_channels=6, **kwargs)
  with pytest.raises(ConfigError, match="with patch_size=1 the UNet already runs at full"):
    UNet3D(pixel_head_channels=8, **{**kwargs, "patch_size": 1})
