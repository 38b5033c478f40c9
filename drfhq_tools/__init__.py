"""drfhq-tools: rendered portraits to a clean face dataset, and benchmarks of their photo-realism."""

__version__ = "0.1.0"
