"""Array helpers shared by models and pipelines: frame windows and FreeLong's spectral ops."""
