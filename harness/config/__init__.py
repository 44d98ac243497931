"""Definitions as data: YAML files validated against schemas at load time."""
