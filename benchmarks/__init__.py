"""Dataset benchmarks: every hot-path stage measured on real-shaped data against a baseline."""
