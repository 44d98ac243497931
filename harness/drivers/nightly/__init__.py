"""Nightly regression runs of a plan, all in this package:

    plans.py   nightly/NAME.yaml loaded and validated (a Plan)
    units.py   a night as a deterministic list of units, the budget, and resume
    night.py   ``kharness nightly run``: lock, pick the night, build, run units, retry, evidence
    fold.py    one night folded from the results store into a NightResult (verdicts by results.verdict)
    book.py    the nightly book (nightly.sqlite): nights, commits, xfstests attempts per night
    html.py    the static HTML report; kcidb.py the KCIDB export
"""
