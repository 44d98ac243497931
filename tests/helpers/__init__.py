"""Helpers shared by the harness's own tests and benchmarks (never a test module: tests do not
import each other). Import as ``tests.helpers.NAME`` from the repository root."""
