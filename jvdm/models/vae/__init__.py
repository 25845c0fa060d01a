"""Video autoencoders for latent diffusion."""
