"""Training: state, optimizer, the sharded step, checkpoints and the loop."""
