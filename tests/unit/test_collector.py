"""serving_gc: the collector's setting while a worker serves, undone after."""

from __future__ import annotations

import gc

from jobbroker.worker import serving_gc
from jobbroker.worker.collector import THRESHOLDS


def test_the_setting_applies_inside_and_is_undone_after() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    assert before != THRESHOLDS
    with serving_gc():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before
