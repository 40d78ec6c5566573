"""The generic training loop (training/loop.py) on CPU, and DDP with 2 gloo processes under torchrun."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from training import distributed as D
from training.config import ConfigError, load_config
from training.loop import OptimConfig, TrainerConfig, fit, lr_factor, seed_everything

REPO = Path(__file__).resolve().parents[1]


class Toy(torch.nn.Module):
    """Two-class logistic regression: forward returns {"loss", "logits"} as fit() expects."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.lin(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}


def toy_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def accuracy(model: torch.nn.Module, data: TensorDataset) -> dict[str, float]:
    x, y = data.tensors
    return {"acc": float((model(x, y)["logits"].argmax(-1) == y).float().mean())}


TRAINER = dict(device="cpu", progress_bar=False, log_every_n_steps=1, seed=0)
OPTIM = dict(lr=0.1, warmup_steps=0, weight_decay=0.0)


def test_two_step_run_then_loss_decreases():
    train, val = toy_data(64, 0), toy_data(32, 1)
    seed_everything(0)
    model = Toy()
    logged: list[tuple[dict, int | None]] = []
    two = fit(model, DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=32), OPTIM,
              {**TRAINER, "max_steps": 2}, evaluate_fn=lambda m: accuracy(m, val),
              log_fn=lambda metrics, step: logged.append((dict(metrics), step)))
    assert two.global_step == 2 and len(two.train_losses) == 2 and two.epochs == 1
    assert len(two.history) == 1 and set(two.last_metrics) == {"val_loss", "acc"}  # evaluated once, at the end
    assert [s for m, s in logged if "lr" in m] == [1, 2] and logged[-1][0]["val_loss"] == two.last_metrics["val_loss"]

    seed_everything(0)
    model = Toy()
    before = accuracy(model, val)["acc"]
    more = fit(model, DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=32), OPTIM,
               {**TRAINER, "max_steps": 40}, evaluate_fn=lambda m: accuracy(m, val), log_fn=None)
    assert more.global_step == 40 and more.epochs == 10  # 4 steps per epoch; max_steps wins over max_epochs
    assert more.train_losses[0] == pytest.approx(two.train_losses[0])  # same seed, same first batch
    assert sum(more.train_losses[-4:]) / 4 < 0.6 * sum(more.train_losses[:4]) / 4
    assert more.history[-1]["val_loss"] < more.history[0]["val_loss"]
    assert more.last_metrics["acc"] > max(before, 0.85)


def test_a_spent_time_budget_ends_training_after_the_step_and_still_evaluates():
    train, val = toy_data(64, 0), toy_data(32, 1)
    seed_everything(0)
    out = fit(Toy(), DataLoader(train, batch_size=16), None, OPTIM,
              {**TRAINER, "max_epochs": 50, "max_minutes": 1e-9}, evaluate_fn=lambda m: accuracy(m, val))
    assert out.global_step == 1 and "acc" in out.last_metrics  # the budget was spent before the first step ended
    with pytest.raises(ConfigError, match="max_minutes"):
        fit(Toy(), DataLoader(train, batch_size=16), None, OPTIM, {**TRAINER, "max_minutes": 0})


def test_early_stopping_keeps_and_restores_best_weights():
    train = toy_data(32, 0)
    scripted = iter([0.5, 0.7, 0.6, 0.65, 0.6, 0.9])
    snapshots: list[dict[str, torch.Tensor]] = []

    def evaluate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"score": next(scripted)}

    model = Toy()
    trainer = {**TRAINER, "max_epochs": 20, "early_stopping": {"metric": "score", "mode": "max", "patience": 2}}
    result = fit(model, DataLoader(train, batch_size=8), None, OPTIM, trainer, evaluate_fn=evaluate, log_fn=None)
    assert result.stopped_early and result.epochs == 4 and len(result.history) == 4
    assert result.best_epoch == 1 and result.best_metrics == {"score": 0.7} and result.best_step == 8
    for k, v in model.state_dict().items():  # the model ends with epoch 1's weights, not the last ones
        assert torch.equal(v, snapshots[1][k])
    assert not torch.equal(model.lin.weight, snapshots[-1]["lin.weight"])

    with pytest.raises(ConfigError, match="'nope' is not among the evaluation metrics \\(score\\)"):
        fit(Toy(), DataLoader(train, batch_size=8), None, OPTIM,
            {**TRAINER, "max_steps": 1, "early_stopping": {"metric": "nope"}}, evaluate_fn=lambda m: {"score": 1.0},
            log_fn=None)


def test_dict_batches_accumulation_bf16_and_errors():
    data = toy_data(40, 0)

    class DictToy(Toy):
        def forward(self, features, labels):  # called as model(**batch)
            return super().forward(features, labels)

    def collate(items):
        x, y = zip(*items)
        return {"features": torch.stack(x), "labels": torch.stack(y)}

    loader = DataLoader(data, batch_size=8, collate_fn=collate)  # 5 batches
    trainer = {**TRAINER, "max_epochs": 2, "grad_accum_steps": 2, "precision": "bf16", "progress_bar": True}
    result = fit(DictToy(), loader, loader, OPTIM, trainer, log_fn=None)
    assert result.global_step == 6 and result.epochs == 2  # ceil(5 / 2) = 3 optimizer steps per epoch
    assert all(torch.isfinite(torch.tensor(result.train_losses)))

    class NoDict(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x, y):
            return self.lin(x)

    with pytest.raises(TypeError, match="NoDict.forward must return a dict with a 'loss' entry"):
        fit(NoDict(), DataLoader(data, batch_size=8), None, OPTIM, {**TRAINER, "max_steps": 1}, log_fn=None)
    with pytest.raises(ConfigError, match="unknown field 'max_step'"):
        fit(Toy(), DataLoader(data, batch_size=8), None, OPTIM, {**TRAINER, "max_step": 1}, log_fn=None)
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        fit(Toy(), DataLoader(data, batch_size=8), None, OPTIM, {**TRAINER, "precision": "fp16"}, log_fn=None)


def test_schedule_and_single_process_helpers():
    cfg = OptimConfig(warmup_steps=2, schedule="linear", min_lr_ratio=0.0)
    factors = [lr_factor(s, 10, cfg) for s in range(10)]
    assert factors[0] < factors[1] < factors[2] == 1.0 and factors[-1] < factors[2]
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert lr_factor(5, 10, OptimConfig(schedule="constant")) == 1.0
    info = D.init_distributed()
    assert info == D.SINGLE and not info.enabled
    loader = DataLoader(toy_data(8), batch_size=4)
    assert D.distributed_loader(loader, info) is loader
    assert D.all_reduce_mean({"a": 1, "b": torch.tensor(2.0), "c": "x"}, info) == {"a": 1.0, "b": 2.0}
    assert TrainerConfig().early_stopping.metric is None


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
sys.path.insert(0, {here!r})
import torch.distributed as dist
from torch.utils.data import DataLoader
from training import distributed as D
from training.config import load_config
from training.loop import fit, seed_everything
from test_loop_ddp import Toy, toy_data, accuracy

cfg = load_config({exp!r}, ["trainer.max_steps=6", "trainer.progress_bar=false", "trainer.log_every_n_steps=1"])
seed_everything(1000 + int(__import__("os").environ["RANK"]))  # different init per rank: DDP must sync it
model = Toy()
val = toy_data(16, 1)
calls = []
result = fit(model, DataLoader(toy_data(64, 0), batch_size=8, shuffle=True), None, cfg["optim"], cfg["trainer"],
             evaluate_fn=lambda m: accuracy(m, val), log_fn=lambda metrics, step: calls.append(step))
torch.save({{"rank": dist.get_rank(), "backend": dist.get_backend(), "world_size": dist.get_world_size(), "result_world_size": result.world_size,
            "epochs": result.epochs, "steps": result.global_step, "log_calls": len(calls),
            "state": {{k: v.clone() for k, v in model.state_dict().items()}}}}, {out!r} + f"/rank{{dist.get_rank()}}.pt")
D.cleanup()
"""


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path: Path):
    exp = tmp_path / "ddp.yaml"
    exp.write_text("defaults: [{optim: adamw}, {trainer: ddp_cpu}]\noptim: {lr: 0.05, warmup_ratio: 0.0}\n")
    cfg = load_config(exp)
    assert cfg["trainer"]["backend"] == "gloo" and cfg["trainer"]["num_processes"] == 2
    script = tmp_path / "ddp_script.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO), here=str(Path(__file__).parent), exp=str(exp),
                                        out=str(tmp_path)))
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert {r0["rank"], r1["rank"]} == {0, 1} and r0["backend"] == r1["backend"] == "gloo"
    assert r0["world_size"] == r1["world_size"] == r0["result_world_size"] == 2
    # 64 items / 2 ranks / batch 8 = 4 steps per epoch: 6 steps take 2 epochs only if the data was sharded
    assert r0["steps"] == r1["steps"] == 6 and r0["epochs"] == r1["epochs"] == 2
    assert r0["log_calls"] > 0 and r1["log_calls"] == 0  # only rank 0 logs
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    seed_everything(1000)
    assert not torch.equal(Toy().lin.weight, r0["state"]["lin.weight"])  # and training moved them
