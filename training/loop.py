"""One training loop for every hotline model: AdamW, warmup + decay, clipping, AMP, early stopping, DDP.

A model fits this loop when its ``forward`` returns a dict with a scalar ``"loss"``. Batches are passed
as ``model(**batch)`` for dicts, ``model(*batch)`` for tuples/lists and ``model(batch)`` otherwise; tensors
in them are moved to the training device first (other values are passed as they are).

Run it under ``torchrun --nproc_per_node=N`` (WORLD_SIZE > 1) and :func:`fit` joins the process group,
wraps the model in DDP, shards the training loader and averages logged metrics over ranks; only rank 0
logs and shows progress bars. The caller calls :func:`training.distributed.cleanup` at the very end.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from training import distributed as D
from training.config import ConfigError, to_dataclass

LogFn = Callable[[Mapping[str, float], "int | None"], None]  # (metrics, step) -> None
EvaluateFn = Callable[[torch.nn.Module], Mapping[str, float]]  # model (eval mode) -> metrics


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw"] = "adamw"  # optimizer (AdamW; biases and norm weights get no weight decay)
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.01  # decoupled weight decay for matrices/embeddings
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decay rates
    eps: float = 1e-8  # AdamW denominator epsilon
    warmup_steps: int = 0  # optimizer steps of linear warmup from 0; wins over warmup_ratio when > 0
    warmup_ratio: float = 0.0  # warmup as a fraction of all optimizer steps (used when warmup_steps is 0)
    schedule: Literal["linear", "constant"] = "linear"  # after warmup: linear decay to min_lr_ratio*lr, or flat
    min_lr_ratio: float = 0.0  # final learning rate as a fraction of lr (linear schedule)
    grad_clip_norm: float | None = 1.0  # clip the global gradient L2 norm to this; null = no clipping


@dataclass(frozen=True)
class EarlyStoppingConfig:
    metric: str | None = None  # evaluation metric to watch (a key of evaluate_fn's dict, or "val_loss"); null = keep last
    mode: Literal["max", "min"] = "max"  # whether a larger or a smaller value is better
    patience: int = 3  # evaluations without improvement before stopping; 0 = never stop early (still keep best)
    min_delta: float = 0.0  # smallest change that counts as an improvement


@dataclass(frozen=True)
class TrainerConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"  # "auto" = cuda when available, else cpu
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype; fp16 adds a GradScaler (CUDA only)
    max_epochs: int = 10  # passes over the training data
    max_steps: int | None = None  # optimizer steps; when set it wins over max_epochs (stops mid-epoch too)
    grad_accum_steps: int = 1  # batches whose gradients add up into one optimizer step
    eval_every_n_steps: int | None = None  # also evaluate every N optimizer steps (besides each epoch end)
    log_every_n_steps: int = 10  # log train_loss and lr every N optimizer steps
    seed: int = 0  # seed for python, numpy and torch (set again at the start of fit)
    progress_bar: bool = True  # tqdm bars (only ever on rank 0)
    restore_best: bool = True  # load the best evaluated weights into the model when fit ends
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)  # what "best" means
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # DDP backend when WORLD_SIZE > 1 (auto: nccl on CUDA, else gloo)
    num_processes: int = 1  # processes a launcher starts with torchrun (1 = no DDP)
    find_unused_parameters: bool = False  # DDP option for models that skip some parameters in forward
    max_minutes: float | None = None  # wall-clock budget of training steps; when spent, fit ends after the step


@dataclass(frozen=True)
class FitResult:
    best_metrics: dict[str, float]  # evaluation metrics of the kept weights (rank-averaged)
    best_epoch: int  # epoch (0-based) of the kept weights
    best_step: int  # optimizer step of the kept weights
    last_metrics: dict[str, float]  # metrics of the final evaluation
    global_step: int  # optimizer steps taken
    epochs: int  # epochs started
    stopped_early: bool  # True when early stopping ended training
    history: list[dict[str, float]]  # every evaluation: epoch, step, train_loss and the metrics
    train_losses: list[float]  # this rank's loss per optimizer step
    best_state_dict: dict[str, torch.Tensor] | None  # CPU copy of the kept weights (None without evaluations)
    world_size: int  # processes that trained together
    device: str  # where training ran, e.g. "cpu" or "cuda:0"


def seed_everything(seed: int) -> int:
    """Seed python's random, numpy and torch (all devices); returns the seed."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def resolve_device(name: str = "auto", info: D.DistInfo = D.SINGLE) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; under DDP on CUDA each rank gets ``cuda:<local_rank>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("trainer.device is 'cuda' but no CUDA GPU is visible: use trainer.device=cpu (or trainer=cpu)")
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"trainer.device '{name}' is not one of auto, cpu, cuda")


def autocast_context(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ConfigError(f"trainer.precision '{precision}' is not one of fp32, bf16, fp16")
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("trainer.precision=fp16 needs CUDA (a GradScaler); use bf16 or fp32 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; 1-d tensors (biases, norms) get no weight decay."""
    if cfg.name != "adamw":
        raise ConfigError(f"optim.name '{cfg.name}' is not supported; use adamw")
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning-rate multiplier for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else int(round(cfg.warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * (1.0 - progress)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def _forward(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    if isinstance(batch, Mapping):
        out = model(**batch)
    elif isinstance(batch, (list, tuple)):
        out = model(*batch)
    else:
        out = model(batch)
    if not isinstance(out, Mapping) or "loss" not in out:
        got = f"a dict with keys {sorted(out)}" if isinstance(out, Mapping) else type(out).__name__
        raise TypeError(f"{type(D.unwrap(model)).__name__}.forward must return a dict with a 'loss' entry for fit(); got {got}")
    return out["loss"]


def _default_log(metrics: Mapping[str, float], step: int | None) -> None:
    from training.tracking import log_metrics

    log_metrics(dict(metrics), step)


def _improved(value: float, best: float | None, es: EarlyStoppingConfig) -> bool:
    if best is None:
        return not math.isnan(value)
    if es.mode == "max":
        return value > best + es.min_delta
    return value < best - es.min_delta


def _as_cfg(cls, cfg):
    if isinstance(cfg, cls):
        return cfg
    if isinstance(cfg, Mapping):
        return to_dataclass(cls, cfg)
    raise TypeError(f"expected {cls.__name__} or a mapping of its fields, got {type(cfg).__name__}")


def fit(
    model: torch.nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    optim_cfg: OptimConfig | Mapping[str, Any],
    trainer_cfg: TrainerConfig | Mapping[str, Any],
    evaluate_fn: EvaluateFn | None = None,
    log_fn: LogFn | None = _default_log,
) -> FitResult:
    """Train ``model`` in place and return what happened; the model ends with the best weights.

    Evaluation runs after every epoch, every ``eval_every_n_steps`` and once at the end if the last
    steps were not evaluated: it computes ``val_loss`` over ``val_loader`` (when given) and adds
    ``evaluate_fn(model)`` (the plain module, in eval mode, under no_grad). ``log_fn(metrics, step)``
    receives ``train_loss``/``lr`` every ``log_every_n_steps`` and the evaluation metrics (plus
    ``epoch`` and ``train_loss``) at each evaluation; by default it logs to the active MLflow run, if any.
    """
    optim = _as_cfg(OptimConfig, optim_cfg)
    tc = _as_cfg(TrainerConfig, trainer_cfg)
    es = tc.early_stopping
    if tc.max_steps is not None and tc.max_steps < 1:
        raise ConfigError(f"trainer.max_steps must be >= 1 or null, got {tc.max_steps}")
    if tc.grad_accum_steps < 1:
        raise ConfigError(f"trainer.grad_accum_steps must be >= 1, got {tc.grad_accum_steps}")
    if es.metric is not None and val_loader is None and evaluate_fn is None:
        raise ConfigError(
            f"trainer.early_stopping.metric is '{es.metric}' but fit() got no val_loader or evaluate_fn to compute it; "
            "pass one or set trainer.early_stopping.metric=null"
        )

    info = D.init_distributed(tc.backend) if D.env_world_size() > 1 else D.SINGLE
    seed_everything(tc.seed)
    device = resolve_device(tc.device, info)
    main = info.is_main
    log = log_fn if (log_fn is not None and main) else (lambda metrics, step: None)

    model.to(device)
    net = D.wrap_ddp(model, info, tc.find_unused_parameters)
    train_loader = D.distributed_loader(train_loader, info, seed=tc.seed)
    try:
        batches_per_epoch: int | None = len(train_loader)
    except TypeError:  # iterable dataset without a length
        batches_per_epoch = None
    if batches_per_epoch is None and tc.max_steps is None:
        raise ConfigError("the training loader has no length: set trainer.max_steps")
    if batches_per_epoch == 0:
        raise ValueError("the training loader yields no batches (empty dataset, or drop_last with too few items)")
    steps_per_epoch = math.ceil(batches_per_epoch / tc.grad_accum_steps) if batches_per_epoch else None
    total_steps = tc.max_steps if tc.max_steps is not None else tc.max_epochs * steps_per_epoch
    max_epochs = tc.max_epochs if tc.max_steps is None else (
        math.ceil(tc.max_steps / steps_per_epoch) if steps_per_epoch else 1 << 30
    )

    optimizer = build_optimizer(model, optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, optim))
    autocast_context(device, tc.precision)  # fail early on a bad precision/device pair
    scaler = torch.amp.GradScaler("cuda") if tc.precision == "fp16" else None

    state: dict[str, Any] = dict(best_value=None, best_metrics={}, best_epoch=0, best_step=0, best_state=None,
                                 bad_evals=0, last_eval_step=-1, last_metrics={})
    history: list[dict[str, float]] = []
    train_losses: list[float] = []
    global_step, epoch, stopped_early = 0, 0, False
    if tc.max_minutes is not None and tc.max_minutes <= 0:
        raise ConfigError(f"trainer.max_minutes must be > 0 or null, got {tc.max_minutes}")
    deadline = None if tc.max_minutes is None else time.monotonic() + 60.0 * tc.max_minutes
    window: list[float] = []  # losses since the last train_loss log
    epoch_losses: list[float] = []

    def evaluate(epoch: int) -> bool:
        """Evaluate, log, track the best weights; True when early stopping says stop."""
        net.eval()
        plain = D.unwrap(net)
        metrics: dict[str, float] = {}
        with torch.no_grad():
            if val_loader is not None:
                total, n = 0.0, 0
                for batch in val_loader:
                    with autocast_context(device, tc.precision):
                        total += float(_forward(plain, move_to_device(batch, device)).float())
                    n += 1
                metrics["val_loss"] = total / max(n, 1)
            if evaluate_fn is not None:
                metrics.update(evaluate_fn(plain) or {})
        net.train()
        metrics = D.all_reduce_mean(metrics, info, device if device.type == "cuda" else "cpu")
        ep_loss = D.all_reduce_mean({"train_loss": float(np.mean(epoch_losses)) if epoch_losses else float("nan")},
                                    info, device if device.type == "cuda" else "cpu")
        record = {"epoch": float(epoch), "step": float(global_step), **ep_loss, **metrics}
        history.append(record)
        log({k: v for k, v in record.items() if k != "step"}, global_step)
        state["last_eval_step"] = global_step
        state["last_metrics"] = metrics
        if es.metric is None:
            value, improved = None, True
        else:
            if es.metric not in metrics:
                raise ConfigError(
                    f"trainer.early_stopping.metric '{es.metric}' is not among the evaluation metrics "
                    f"({', '.join(sorted(metrics)) or 'none'}); set trainer.early_stopping.metric to one of them"
                )
            value = metrics[es.metric]
            improved = _improved(value, state["best_value"], es)
        if improved:
            state.update(best_value=value, best_metrics=dict(metrics), best_epoch=epoch, best_step=global_step,
                         bad_evals=0,
                         best_state={k: v.detach().to("cpu", copy=True) for k, v in plain.state_dict().items()})
            return False
        state["bad_evals"] += 1
        if es.patience > 0 and state["bad_evals"] >= es.patience:
            if main:
                tqdm.write(f"early stopping at epoch {epoch}, step {global_step}: {es.metric} did not improve on "
                           f"{state['best_value']:.4g} for {es.patience} evaluations")
            return True
        return False

    net.train()
    optimizer.zero_grad(set_to_none=True)
    done = False
    bar_on = main and tc.progress_bar
    steps_bar = tqdm(total=total_steps, desc="train", unit="step", disable=not bar_on, dynamic_ncols=True)
    while not done and epoch < max_epochs:
        D.set_epoch(train_loader, epoch)
        epoch_losses = []
        micro_losses: list[float] = []
        for i, batch in enumerate(train_loader):
            last_in_epoch = batches_per_epoch is not None and i + 1 == batches_per_epoch
            update = (i + 1) % tc.grad_accum_steps == 0 or last_in_epoch
            sync = contextlib.nullcontext() if (update or not info.enabled) else net.no_sync()
            with sync:
                with autocast_context(device, tc.precision):
                    loss = _forward(net, move_to_device(batch, device))
                scaled = loss / tc.grad_accum_steps
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            micro_losses.append(float(loss.detach().float()))
            if not update:
                continue
            if scaler is not None:
                scaler.unscale_(optimizer)
            if optim.grad_clip_norm is not None and optim.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            step_loss = float(np.mean(micro_losses))
            micro_losses = []
            train_losses.append(step_loss)
            epoch_losses.append(step_loss)
            window.append(step_loss)
            steps_bar.update(1)
            steps_bar.set_postfix(epoch=epoch, loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            if tc.log_every_n_steps > 0 and global_step % tc.log_every_n_steps == 0:
                avg = D.all_reduce_mean({"train_loss": float(np.mean(window))}, info,
                                        device if device.type == "cuda" else "cpu")
                log({**avg, "lr": lr}, global_step)
                window = []
            if tc.eval_every_n_steps and global_step % tc.eval_every_n_steps == 0 and not last_in_epoch:
                if evaluate(epoch):
                    done = stopped_early = True
                    break
            if tc.max_steps is not None and global_step >= tc.max_steps:
                done = True
                break
            if deadline is not None:  # every rank stops at the same step: the flag is averaged across ranks
                late = D.all_reduce_mean({"late": float(time.monotonic() >= deadline)}, info,
                                         device if device.type == "cuda" else "cpu")["late"]
                if late > 0:
                    done = True
                    break
        if not stopped_early and state["last_eval_step"] != global_step:  # epoch end, or max_steps reached
            if evaluate(epoch):
                done = stopped_early = True
        epoch += 1
    steps_bar.close()
    if state["last_eval_step"] != global_step:  # evaluate the weights training ended with
        evaluate(max(epoch - 1, 0))
    if tc.restore_best and state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return FitResult(
        best_metrics=state["best_metrics"],
        best_epoch=state["best_epoch"],
        best_step=state["best_step"],
        last_metrics=state["last_metrics"],
        global_step=global_step,
        epochs=epoch,
        stopped_early=stopped_early,
        history=history,
        train_losses=train_losses,
        best_state_dict=state["best_state"],
        world_size=info.world_size,
        device=str(device),
    )
