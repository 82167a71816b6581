"""The training loop: data -> student (+ objective) -> one backward -> optimizer, with
per-epoch evaluation on the full test set, atomic ``last``/``best`` checkpoints and resume."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import atomic_save, remove_stale_temporaries
from ..data import build_batch_transform, build_datasets, make_loader, resolve_data_root
from ..errors import DataError, NonFiniteLossError, StoppedError, backward_error
from ..models.pretrained import load_pretrained
from ..ratebp import RateBackprop
from ..spiking import set_backend
from .config import ExperimentConfig
from .distributed import DistContext
from .evaluate import evaluate
from .finite import check_finite_batch, check_finite_model
from .objective import TrainStep, build_objective
from .optim import build_optimizer, build_scheduler
from .resume import read_run_checkpoint, restore, run_checkpoint
from .run_logger import RunLogger
from .run_paths import stored_config
from .run_stm import periodic_stm
from .setup import (
    AMP_DTYPES,
    build_student,
    check_device_options,
    first_forward,
    probe_forward,
    resolve_device,
    run_kind,
    seed_everything,
)
from .stop_signal import STOP_SIGNALS, agreed_step, agreed_stop, stop_requests
from .train_state import TrainState, epoch_means, epoch_message, run_summary


class Trainer:
    """One training run of ``cfg`` into ``run_dir``: ``fit()`` trains (from ``resume()``'s
    state when called first), writing checkpoints, metrics and the log there."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: str | os.PathLike,
        *,
        data_dir: str | None = None,
        objective: nn.Module | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        seed_everything(t.seed, t.deterministic)
        device = resolve_device(t.device)
        self.dist = DistContext.from_env(device)  # torchrun: one process per device
        self.device = self.dist.device(device)
        check_device_options(t, self.device, self.dist.enabled)
        self.autocast_dtype = AMP_DTYPES[t.amp]
        self.scaler = torch.amp.GradScaler("cuda") if t.amp == "fp16" else None
        # recorded in the checkpoints: eval and report find the data without --data-dir
        self.data_root = str(resolve_data_root(data_dir or cfg.data.root).absolute())
        self._build_data(self.data_root)
        self._build_student()
        self._build_objective(objective)
        self.optimizer = build_optimizer([self.model, self.objective], cfg.optim)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.sched, t.epochs, len(self.train_loader)
        )
        self.state = TrainState()
        self.unchecked = {"train", "test"} if cfg.data.check_finite else set()  # first passes
        self.echoed = float("-inf")  # when a step line was last printed (off a terminal)
        self.stop_requested = lambda: 0  # within fit: the stop signal that came (0: none)
        self.stop = 0  # the stop signal any rank received, as of the last step
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main)
        for path in remove_stale_temporaries(self.run_dir) if self.dist.is_main else []:
            self.logger.log(f"removed {path.name}, left by a checkpoint write that was killed")

    def _build_data(self, root: str | None) -> None:
        """Datasets and loaders; under torchrun each rank gets its shard."""
        d, seed = self.cfg.data, self.cfg.train.seed
        self.train_set, self.test_set, self.info = build_datasets(
            d.name, root, download=d.download, train_subset=d.train_subset,
            label_noise=d.label_noise, seed=seed, **d.options,
        )  # fmt: skip
        transform = build_batch_transform(d.augment, self.info) if d.augment else None
        shard = dict(rank=self.dist.rank, world_size=self.dist.world_size)
        self.train_loader = make_loader(
            self.train_set, self.dist.per_rank_batch(d.batch_size), train=True,
            transform=transform, info=self.info, seed=seed, num_workers=d.num_workers, **shard,
        )  # fmt: skip
        self.test_loader = make_loader(  # each rank tests its share; counts are summed
            self.test_set, d.eval_batch_size, train=False, info=self.info,
            num_workers=d.num_workers, **shard,
        )  # fmt: skip

    def _build_student(self) -> None:
        """The student on the device, its neurons on ``train.neuron_backend``, and what the
        objective calls as the student while training: the model (BPTT, maybe compiled) or
        its rate-based view (Rate-BP: spike pass without graph, then one rate pass)."""
        t = self.cfg.train
        self.model = self.make_student()
        if t.sync_bn and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.backend = set_backend(self.model, t.neuron_backend, self.device)
        self.rate_view = None
        if t.backprop == "rate":
            self.rate_view = RateBackprop(self.model, t.rate_stored_steps, t.rate_grad_scale)
            self.train_forward: Any = self.rate_view
        else:
            self.train_forward = torch.compile(self.model) if t.compile else self.model

    def make_student(self) -> nn.Module:
        """The student ``cfg.model`` describes, from ``model.init_from``'s weights if set (a
        ``ModuleTrainer``: the one it was given)."""
        m, info = self.cfg.model, self.info
        model = build_student(self.cfg, info.num_classes, info.in_channels, info.time_steps)
        if m.init_from:
            load_pretrained(model, m.init_from, arch=m.name, what="model.init_from")
        return model

    def _build_objective(self, objective: nn.Module | None) -> None:
        """The objective (its method modules built from one real batch) and the module that
        holds every trained parameter, which DDP wraps under torchrun."""
        if objective is None:
            objective = build_objective(
                self.cfg, self.model, self.info.num_classes, self.info.in_channels,
                world_size=self.dist.world_size, num_train=len(self.train_set),
            )  # fmt: skip
        self.objective = objective.to(self.device)
        x, y = (t.to(self.device) for t in next(iter(self.train_loader)))
        with first_forward(f"model {self.cfg.model.name!r}", x):  # before anything is written
            if hasattr(self.objective, "build"):  # create method modules from real shapes
                self.objective.build(self.model, x, y)
            probe_forward(self.model, x)  # the contract, and the logits evaluation sees
        self.step_module: nn.Module = TrainStep(self.model, self.objective, self.train_forward)
        if self.dist.enabled:
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=any(p.requires_grad for p in self.objective.parameters()),
            )

    # -- checkpoints ------------------------------------------------------------------------
    def resume(self, path: str | os.PathLike | None = None, force: bool = False) -> None:
        """Restore model, objective, optimizer, scheduler, RNG and loop position. A checkpoint
        written under another config is refused (naming the keys) unless ``force``."""
        ckpt = read_run_checkpoint(path or self.run_dir / "last.pt", self.device)
        restore(self, ckpt, force)
        self.logger.log(f"resumed at epoch {self.state.epoch + 1}, step {self.state.step_in_epoch}")

    def save(self, name: str) -> None:
        """Write a checkpoint (rank 0 only; the others wait until it is on disk)."""
        s = self.state
        where = f"after step {s.global_step} (epoch {s.epoch + (s.step_in_epoch > 0)})"
        check_finite_model(self.step_module, where)
        ckpt = run_checkpoint(self)  # on every rank: it sums the ranks' running sums
        if self.dist.is_main:
            atomic_save(ckpt, self.run_dir / name)
        self.dist.barrier()

    # -- loop -------------------------------------------------------------------------------
    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict] | None:
        """One optimisation step: ``(logits, loss terms)``, or ``None`` when a non-finite loss
        was skipped (``train.skip_nonfinite``); beyond that budget ``NonFiniteLossError``."""
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            logits, terms = self.step_module(x, y, index)
        loss = sum(terms.values())
        if self.rate_view is not None:
            loss = self.rate_view.training_loss(loss)
        local = (not torch.isfinite(loss), self.stop_requested())
        nonfinite, self.stop = agreed_step(*local, self.dist, self.device)
        if nonfinite:  # on any rank: every rank skips the step
            self._nonfinite(terms)
            self.scheduler.step()  # the schedule stays aligned with the data
            return None
        self.optimizer.zero_grad(set_to_none=True)
        try:  # a student keeping autograd state across batches fails here
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        except RuntimeError as err:
            raise backward_error(err) from None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.train.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return logits.detach(), {k: v.detach() for k, v in terms.items()}

    def _nonfinite(self, terms: dict[str, torch.Tensor]) -> None:
        s, budget = self.state, self.cfg.train.skip_nonfinite
        bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v)) or "on another rank"
        where = f"non-finite loss ({bad}) at step {s.global_step + 1} (epoch {s.epoch + 1})"
        s.skipped_steps += 1
        if s.skipped_steps > budget:
            last = self.run_dir / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint yet"
            raise NonFiniteLossError(
                f"{where}; stopped after {budget} skipped step(s), {kept}. Lower optim.lr, set "
                "train.grad_clip, or allow skipping with train.skip_nonfinite=K"
            )
        self.logger.log(f"{where}: step skipped ({s.skipped_steps}/{budget})")

    def train_epoch(self) -> dict[str, float]:
        s, cfg = self.state, self.cfg
        self.model.train()
        self.objective.train()
        self.train_loader.set_epoch(s.epoch)
        if hasattr(self.objective, "set_epoch"):
            self.objective.set_epoch(s.epoch)
        n_batches = len(self.train_loader)
        run = s.running
        bar = tqdm(
            total=n_batches,
            initial=s.step_in_epoch,
            desc=f"epoch {s.epoch + 1}/{cfg.train.epochs}",
            leave=False,
            disable=None if self.dist.is_main else True,
            dynamic_ncols=True,
        )
        run.setdefault("seconds", 0.0)
        start = time.perf_counter()  # of the time not yet added to run["seconds"]
        rate_start, seen_now = start, 0
        check = "train" in self.unchecked
        batches = self.train_loader.iter_from(s.step_in_epoch, with_indices=True)
        for x, y, index in self._saved_on_data_error(batches):
            if check:
                check_finite_batch(x, index, "training", cfg.data.name)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            result = self.train_step(x, y, index)
            if result is None:  # skipped non-finite step
                s.step_in_epoch += 1
                s.global_step += 1
                bar.update(1)
                start = self._save_if_due(n_batches, start)
                continue
            logits, terms = result
            values = {k: v.item() for k, v in terms.items()}  # one host sync per term
            total = s.add_batch(values, (logits.argmax(1) == y).sum().item(), y.numel())
            s.step_in_epoch += 1
            s.global_step += 1
            seen_now += y.numel()
            rate = seen_now / max(time.perf_counter() - rate_start, 1e-9)
            bar.update(1)
            bar.set_postfix(
                loss=f"{total:.3f}",
                acc=f"{100 * run['correct'] / run['samples']:.1f}",
                img_s=f"{rate:.0f}",
            )
            if s.global_step % cfg.train.log_every == 0:  # printed too where no bar shows
                self._log_step(values, total, n_batches, rate, bar.disable and self.dist.is_main)
            start = self._save_if_due(n_batches, start)
        bar.close()
        self.unchecked.discard("train")
        run["seconds"] += time.perf_counter() - start
        sums = s.summed_running(self.dist, self.device)
        return {**epoch_means(sums), "seconds": sums["seconds"]}

    def _save_if_due(self, n_batches: int, start: float) -> float:
        """``last.pt`` every ``train.checkpoint_every`` steps, and on SIGTERM or Ctrl-C, then
        ``StoppedError``; returns the start of the time not yet in the running seconds."""
        s, every, stop = self.state, self.cfg.train.checkpoint_every, self.stop  # agreed_step's
        if stop or (every and s.global_step % every == 0 and s.step_in_epoch < n_batches):
            s.running["seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            self.save("last.pt")
        if stop:
            self._stopped(stop, f"after step {s.step_in_epoch}/{n_batches} of epoch {s.epoch + 1}")
        return start

    def _stopped(self, signum: int, where: str) -> NoReturn:
        message = (
            f"stopped by {STOP_SIGNALS[signum]} {where}, saved in last.pt: resume the run to "
            "continue"
        )
        self.logger.log(message)
        raise StoppedError(message, signum)

    def _log_step(self, values, total: float, n_batches: int, rate: float, echo: bool) -> None:
        """The periodic log line (printed too with ``echo``) and scalars; weights checked."""
        s = self.state
        check_finite_model(self.step_module, f"after step {s.global_step}")
        parts = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        line = (
            f"epoch {s.epoch + 1} step {s.step_in_epoch}/{n_batches} loss {total:.4f} "
            f"[{parts}] lr {self.optimizer.param_groups[0]['lr']:.5f} {rate:.0f} img/s"
        )
        self.logger.log(line)
        if echo and time.perf_counter() - self.echoed >= 10:  # a line per 10 s at most
            print(line, flush=True)
            self.echoed = time.perf_counter()
        self.logger.scalars({f"train/{k}": v for k, v in values.items()}, s.global_step)

    def fit(self) -> dict[str, Any]:
        """Train to ``train.epochs`` (from the resumed state); SIGTERM or Ctrl-C stops it at
        the end of a step, saved (``StoppedError``: ``engine.stop_signal``)."""
        with stop_requests() as self.stop_requested:
            return self._train_epochs()

    def _train_epochs(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        self.logger.save_config(stored_config(cfg, self.run_dir))  # --force may change it
        if s.epoch == 0 and s.step_in_epoch == 0:
            kind, world = run_kind(cfg, self.model, self.backend), self.dist.world_size
            batch = f"batch {cfg.data.batch_size}" + f" ({world} processes)" * (world > 1)
            self.logger.log(
                f"start: {cfg.model.name} ({kind})"
                f" on {cfg.data.name}, {sum(p.numel() for p in self.model.parameters())} params, "
                f"{len(self.train_set)} train / {len(self.test_set)} test, {batch}, "
                f"device {self.device}"
            )
        while s.epoch < cfg.train.epochs:
            train = self.train_epoch()
            evaluated = s.epoch + 1 == cfg.train.epochs or (s.epoch + 1) % cfg.train.eval_every == 0
            test = self._test_epoch(evaluated)
            stm = periodic_stm(self, s.epoch + 1) if evaluated else None
            improved = s.end_epoch(self.optimizer.param_groups[0]["lr"], train, test, stm)
            self.logger.epoch_metrics(s.history, run_summary(cfg, s.history))
            if evaluated:
                self.logger.scalars({"test/top1": test["top1"], "test/loss": test["loss"]}, s.epoch)
            message = epoch_message(s, cfg.train.epochs, train, test)
            self.logger.log(message)
            if improved:
                self.save("best.pt")
            self.save("last.pt")
            if self.dist.is_main:  # after the saves: a closed stdout (| head) loses nothing
                tqdm.write(message)
            stop = agreed_stop(self.stop_requested(), self.dist, self.device)
            if stop and s.epoch < cfg.train.epochs:
                self._stopped(stop, f"at the end of epoch {s.epoch}")  # e.g. in its evaluation
        self.logger.close()
        return run_summary(cfg, s.history)

    def _test_epoch(self, evaluated: bool) -> dict[str, Any]:
        """The test metrics of the epoch just trained; on a data error (a test image that cannot
        be decoded) its training is first saved, for resume (every process meets the error)."""
        if not evaluated:
            return {"loss": None, "top1": None, "samples": None}
        try:
            return self._evaluate()
        except DataError as err:
            self._raise_saved(err, f"epoch {self.state.epoch + 1}'s training is saved")

    def _saved_on_data_error(self, batches: Iterator) -> Iterator:
        """``batches``; a data error (a file that cannot be read) saves the steps done first."""
        try:
            yield from batches
        except DataError as err:
            saved = f"epoch {self.state.epoch + 1}'s first {self.state.step_in_epoch} steps are"
            self._raise_saved(err, f"{saved} saved", every_rank=not self.dist.enabled)

    def _raise_saved(self, err: DataError, saved: str, every_rank: bool = True) -> NoReturn:
        """``err``, after saving ``last.pt`` when every process has met it (not: a training
        file one rank of torchrun reads, while the others wait in a collective)."""
        if not every_rank:
            raise err
        self.save("last.pt")
        raise DataError(f"{err}; {saved}: fix the data, then resume the run") from None

    def _evaluate(self) -> dict[str, Any]:
        check = self.cfg.data.name if "test" in self.unchecked else None
        result = evaluate(
            self.model, self.test_loader, self.device, self.autocast_dtype, self.dist.sum, check
        )
        self.unchecked.discard("test")
        return result

    def close(self, failed: bool = False) -> None:
        """Leave the process group (under torchrun). DDP goes first, while the group lives:
        its reducer freeing the gloo group can deadlock on the GIL (seen at exit). After an
        error (``failed``) the other ranks may wait in a collective: nothing waits for them."""
        if failed and self.dist.enabled:
            return  # this process ends; torchrun then ends the others
        if self.dist.enabled and isinstance(self.step_module, nn.parallel.DistributedDataParallel):
            self.dist.barrier()
            self.step_module = TrainStep(self.model, self.objective, self.train_forward)
            gc.collect()
        self.dist.close()
