"""Results: statistics over repeated runs and base-versus-patched comparisons."""
