"""Drivers: what plans many boots and decides from their records (suite matrix, nightly, bisect
and check, reproduce). Front ends call a driver; a driver composes :mod:`harness.run` and an
executor; verdicts come from :mod:`harness.results.verdict`."""
