"""Workloads run inside guests: job definitions, rendering and output parsing."""
