import random

import torch

from spikedistill.engine.train_state import (
    TrainState,
    config_diff,
    epoch_means,
    rng_state,
    set_rng_state,
)


def test_running_sums_and_epoch_means_by_hand():
    s = TrainState()
    assert s.add_batch({"ce": 2.0, "kd": 1.0}, correct=3, samples=4) == 3.0
    assert s.add_batch({"ce": 1.0, "kd": 0.5}, correct=1, samples=2) == 1.5
    # loss: (3 * 4 + 1.5 * 2) / 6 = 2.5; ce: (8 + 2) / 6; kd: (4 + 1) / 6; top1: 4 / 6
    assert s.running == {"loss": 15.0, "ce": 10.0, "kd": 5.0, "correct": 4.0, "samples": 6.0}
    means = epoch_means(s.running)
    assert means == {"loss": 2.5, "ce": 10 / 6, "kd": 5 / 6, "top1": 100 * 4 / 6}


def test_state_round_trip_copies_and_accepts_older_checkpoints():
    s = TrainState(epoch=2, step_in_epoch=5, global_step=25, best_top1=91.5, skipped_steps=1)
    s.add_batch({"ce": 1.0}, correct=1, samples=1)
    s.history.append({"epoch": 1, "test_top1": 90.0})
    d = s.to_dict()
    d["history"][0]["test_top1"] = 0.0  # a copy: the state is untouched
    assert s.history[0]["test_top1"] == 90.0
    assert TrainState.from_dict(s.to_dict()) == s
    older = {k: v for k, v in s.to_dict().items() if k != "skipped_steps"}
    assert TrainState.from_dict(older).skipped_steps == 0


def test_rng_state_restores_both_streams():
    state = rng_state()
    a = (torch.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_config_diff_names_nested_keys():
    old = {"train": {"lr": 0.1, "epochs": 3}, "name": "a"}
    new = {"train": {"lr": 0.2, "epochs": 3}, "name": "a", "extra": 1}
    assert config_diff(old, new) == ["extra", "train.lr"]
