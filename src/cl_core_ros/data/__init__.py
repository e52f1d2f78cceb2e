"""Datasets for tests, demos and benchmarks: packaged real photos, Fashion-MNIST if present."""
