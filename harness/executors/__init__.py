"""Executors: where a plan's boots run (here, one after another, or as Ray tasks on a cluster)."""
