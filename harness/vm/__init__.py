"""VM stage: QEMU command lines, accelerator probe, QMP control, serial console, SSH, lifecycle."""
