"""Kernel stage: source import, patch series, kconfig merge, out-of-tree build, artifact cache."""
