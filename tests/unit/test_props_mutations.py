"""The Hypothesis strategies of tests/helpers/mutations.py do make near-valid inputs."""

from __future__ import annotations

from hypothesis import given, settings

from tests.helpers.mutations import FIO_FIELDS, json_with_odd_values, texts

# ------------------------------------------------------------------------------------------
# The strategies do what they claim
# ------------------------------------------------------------------------------------------

FIO = texts("fio/*.json")


def test_odd_json_documents_are_often_still_parseable():
    """Most documents with a value replaced are still usable fio output: the property tests
    reach the figure checks, not only the JSON decoder."""
    from harness.errors import WorkloadError
    from harness.workloads.fio import parse_fio_json
    outcomes = []

    @settings(max_examples=80, deadline=None, database=None)
    @given(json_with_odd_values(FIO, FIO_FIELDS))
    def run(text):
        try:
            outcomes.append(bool(parse_fio_json(text)))
        except WorkloadError:
            outcomes.append(False)

    run()
    assert 0.2 < sum(outcomes) / len(outcomes), outcomes
    assert not all(outcomes)  # and some reach the errors
