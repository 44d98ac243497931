"""One boot's work: what a run is (spec, records), what it needs (testbed: kernels, image,
accelerator), how specs are planned from what a front end asks (plan), and the boot itself
(boot: fio, xfstests, a guest command; hang handling): ``RunSpec -> BootRecord``."""
