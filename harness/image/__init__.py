"""Image stage: mmdebstrap recipes into cached qcow2 base images with per-image SSH keys, as root or not."""
