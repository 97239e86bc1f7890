"""Observations survive the trip from the guarded child to the parent."""

from __future__ import annotations

import numpy as np
import torch

from covertml.supervise.store import load_observations, save_observations
from covertml.supervise.watch import Observations


def test_observations_round_trip(tmp_path) -> None:
    seen = Observations(inputs_seen=10, inputs_checked=8, inputs_unmatched=2, steps=3)
    seen.scores = [0.75, 0.125]  # exact in float32
    seen.examples = [{"step": 2, "score": 0.1, "input": np.ones((1, 8, 8), np.float32)}]
    seen.tamper = [{"kind": "hooks-removed", "step": 1, "when": "at step 1"}]
    seen.notes = [{"kind": "dtype-changed", "step": 3, "when": "before saving"}]
    seen.snapshots = [(2, {"w": torch.arange(4.0)}), (-1, {"w": torch.ones(4)})]
    seen.saved, seen.match_seconds = ["/x/model.pt"], 0.5
    save_observations(seen, tmp_path)
    back = load_observations(tmp_path)
    assert back.summary() == seen.summary()
    assert np.array_equal(back.examples[0]["input"], seen.examples[0]["input"])
    assert [s for s, _ in back.snapshots] == [2, -1]
    assert torch.equal(back.snapshots[0][1]["w"], torch.arange(4.0))
