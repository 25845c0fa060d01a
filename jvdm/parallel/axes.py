"""Logical axis names shared by every model, and the default rules mapping them to mesh axes.

Models annotate params with ``nn.with_logical_partitioning(init, (EMBED, MLP))`` and
activations with ``nn.with_logical_constraint(x, (BATCH, FRAMES, HEIGHT, WIDTH, EMBED))``.
Which mesh axis each name lands on is decided by the rules in the config, not by the model.
"""

# Mesh axes, outermost first.
DATA = "data"
FSDP = "fsdp"
CONTEXT = "context"
TENSOR = "tensor"
MESH_AXES = (DATA, FSDP, CONTEXT, TENSOR)

# Activation axes.
BATCH = "activation_batch"
FRAMES = "activation_frames"
HEIGHT = "activation_height"
WIDTH = "activation_width"
LENGTH = "activation_length"  # flattened tokens
HEADS = "activation_heads"
ACT_EMBED = "activation_embed"

# Parameter axes.
EMBED = "embed"  # model width (input side of a kernel)
MLP = "mlp"  # hidden width of a feed-forward layer / output side of a kernel
QKV_HEADS = "heads"
HEAD_DIM = "head_dim"
CONV_SPATIAL = "conv_spatial"  # kernel window axes, never sharded
# A logical name may appear only once per array, so 2D kernels name their two window axes.
CONV_HEIGHT = "conv_height"
CONV_WIDTH = "conv_width"
CONV_TEMPORAL = "conv_temporal"
NORM = "norm"  # scales/biases of norms
VOCAB = "vocab"
LAYERS = "layers"  # the stacked-layer axis of params under nn.scan

# Default rules: data-parallel batch, FSDP over the model width, tensor over hidden width
# and heads, context over frames. Configs may replace them.
DEFAULT_RULES = (
  (BATCH, (DATA, FSDP)),
  (FRAMES, CONTEXT),
  (HEIGHT, None),
  (WIDTH, None),
  (LENGTH, CONTEXT),
  (HEADS, TENSOR),
  (ACT_EMBED, None),
  (EMBED, FSDP),
  (MLP, TENSOR),
  (QKV_HEADS, TENSOR),
  (HEAD_DIM, None),
  (CONV_SPATIAL, None),
  (CONV_HEIGHT, None),
  (CONV_WIDTH, None),
  (CONV_TEMPORAL, None),
  (NORM, None),
  (VOCAB, None),
  (LAYERS, None),
)
