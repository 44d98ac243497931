"""The composition layer: what a run is (spec, records) and how it is carried out (testbed, run_boot, executor)."""
