"""Long videos from short-trained models: FreeNoise, FreeLong, Gen-L-Video, FIFO-Diffusion and
autoregressive extension (see each module)."""
