"""The one epoch iterator: seeded per-epoch permutations, batches that cross an epoch boundary, exact
resume from its state, and a clear error for a state from another pool or seed."""

import numpy as np
import pytest

from policyopt.core.epochs import EpochIterator


def test_epochs_are_seeded_permutations_and_batches_cross_the_boundary():
    it = EpochIterator(5, seed=3)
    got = np.concatenate([it.take(2) for _ in range(5)])          # 10 = two full epochs
    e0 = np.random.default_rng([3, 0]).permutation(5)
    e1 = np.random.default_rng([3, 1]).permutation(5)
    assert got.tolist() == np.concatenate([e0, e1]).tolist()
    assert (it.epoch, it.position) == (2, 0)


def test_resume_from_state_continues_exactly_and_rejects_another_pool():
    a = EpochIterator(7, seed=1)
    a.take(5)
    state = a.state_dict()
    b = EpochIterator(7, seed=1)
    b.load_state_dict(state)
    assert a.take(9).tolist() == b.take(9).tolist()
    with pytest.raises(ValueError, match="state is for 7 examples / seed 1"):
        EpochIterator(8, seed=1, owner="TextCollector").load_state_dict(state)
    with pytest.raises(ValueError, match="0 examples"):
        EpochIterator(0, seed=1)
