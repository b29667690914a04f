"""The training loop's record: an epoch interrupted before its update completes is not counted, and is never the
best epoch (issue 13, defect 3: 'best epoch 6 of 5')."""
import torch

import hodec
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.fit import Trainer


def test_an_interrupted_epoch_is_never_the_best_epoch():
    cls = hodec.load("specs/lotka_volterra.hode")
    truth = cls().double()
    ts = torch.linspace(0, 5, 11, dtype=torch.float64)
    with torch.no_grad():
        ys = truth.simulate(ts)
    data = make_dataset(truth, ts.numpy(), {n: ys[:, i].numpy() for i, n in enumerate(truth.state_names)})
    start = cls().double()
    start.set_params({name: 1.3 * value for name, value in truth.params().items()})  # the MSE falls every epoch
    trainer = Trainer(start, data, load_config({"method": "vanilla", "epochs": 10, "lr": 0.01}))
    update, calls = trainer.optimizer.step, []

    def step(*args, **kwargs):  # Ctrl-C arrives during the third epoch's update
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return update(*args, **kwargs)

    trainer.optimizer.step = step
    assert trainer.train() == "interrupted"
    assert trainer.epoch == 2 and len(trainer.history) == 2
    mses = [e["mse"] for e in trainer.history]
    assert mses[1] < mses[0]  # the second epoch was the best completed one, so the test can tell
    assert trainer.best_epoch == 2 and trainer.best_mse == mses[1]
