"""Image stage: debootstrap recipes into cached qcow2 base images with per-image SSH keys."""
