"""kharness: build patched kernels, boot them in QEMU, run fs/IO workloads, collect evidence."""

__version__ = "0.1.0"
