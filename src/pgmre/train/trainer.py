"""A small, readable trainer (flair-style): one object, one ``fit()``.

It runs unchanged on one CPU, one GPU, or many processes under ``torchrun``/``accelerate launch``
(``accelerate`` handles process groups, DDP wrapping and mixed precision; only rank 0 writes).
Determinism: the order of every epoch comes from ``seed + epoch``, and the last checkpoint carries
optimizer, scheduler and RNG state plus the position inside the epoch, so a resumed run continues
exactly where the interrupted one stopped (tested bit for bit in one process), the optional k-means
refresh of the prototype banks included (its step count and recent features, and the banks' usage
counts, are saved with the trainer state). Only rank 0 writes; under DDP the trainer state holds each
rank's own RNG state and refresh buffers, so every rank resumes its own dropout masks and k-means draws
(the two-process resume is tested bit for bit; on the CPU the ranks' generators also stay in step, on
CUDA they drift apart with each rank's padded lengths).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader, Dataset

from pgmre.config import Config, dump_config
from pgmre.evaluate.inference import move_batch, predict_dataset, sample_lengths
from pgmre.evaluate.metrics import score
from pgmre.model.prototypes import load_resume_states, resume_states
from pgmre.outputs import write_text_atomic
from pgmre.precision import Precision, accelerate_mixed_precision, autocast, resolve_precision
from pgmre.progress import progress_bar
from pgmre.train.batching import epoch_batches
from pgmre.train.checkpoint import (
    Progress,
    atomic_directory,
    load_trainer_state,
    process_state,
    rank_state,
    recover_interrupted,
    save_trainer_state,
    set_rng_state,
)
from pgmre.train.optim import build_optimizer, keep_optimizer_kernel

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1", "macro_f1")


class TrainingInterrupted(RuntimeError):
    """Raised after SIGINT/SIGTERM once a resumable checkpoint has been written."""


def _mixed_precision(config: Config) -> str:
    """accelerate's setting: CUDA only (on the CPU, bf16 is :mod:`pgmre.precision`'s autocast)."""
    if not torch.cuda.is_available():
        return "no"
    setting = accelerate_mixed_precision(config.train.precision, config.train.mixed_precision)
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def make_accelerator(config: Config) -> Accelerator:
    """On CPU, ``cpu=True`` is what makes accelerate pick up a torchrun/gloo process group (MULTI_CPU).

    ``find_unused_parameters``: some variants leave encoder parameters without gradient (the BERT pooler
    when T_S is not the pooler output), which plain DDP rejects.
    """
    return Accelerator(
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        mixed_precision=_mixed_precision(config),
        cpu=not torch.cuda.is_available(),
    )


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's sample order for an epoch: a seeded permutation, padded so every rank gets as many."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    padded = perm + perm[: (-len(perm)) % world]
    return padded[rank::world]


class Trainer:
    """Trains a PG-MRE model from a :class:`~pgmre.pipeline.MREPipeline` and writes a run directory."""

    def __init__(self, config: Config, run_dir: str | Path, accelerator: Accelerator | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.accelerator = accelerator or make_accelerator(config)
        self.precision: Precision = resolve_precision(config.train.precision, self.accelerator.device)
        self._stop_signal: int | None = None

    @property
    def precision_label(self) -> str:
        """What a run records: ``fp32``/``bf16`` on the CPU, accelerate's mixed precision on CUDA."""
        if self.accelerator.device.type == "cpu":
            return self.precision
        mixed = str(self.accelerator.mixed_precision)
        return "fp32" if mixed == "no" else mixed  # bf16 here means accelerate's autocast and ours agree

    # ------------------------------------------------------------------ helpers
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum
        log.warning("received signal %s: saving a resumable checkpoint after this step", signum)

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not in the main thread: no handlers
                previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _should_stop(self) -> bool:
        """A signal seen by any rank stops every rank at the same step (else one waits forever in a save)."""
        local = int(self._stop_signal is not None)
        if self.accelerator.num_processes == 1:
            return bool(local)
        flags = self.accelerator.gather(torch.tensor([local], device=self.accelerator.device))
        if int(flags.max()) and self._stop_signal is None:
            self._stop_signal = signal.SIGTERM
        return bool(int(flags.max()))

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        csv_path = self.run_dir / "metrics.csv"
        flat = {k: v for k, v in record.items() if not isinstance(v, dict | list)}
        header = list(flat)
        if csv_path.exists():  # a resumed run keeps the file's columns (an older run may lack new keys)
            with open(csv_path, newline="") as fh:
                header = next(csv.reader(fh), header)
        with open(csv_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(flat)

    def _save(
        self, name: str, model: torch.nn.Module, optimizer: Any, scheduler: Any, progress: Progress
    ) -> None:
        """Write ``best`` or ``last`` atomically; ``last`` also carries the trainer state for resuming."""
        self.accelerator.wait_for_everyone()
        ranks = None
        if name == "last":  # what each process keeps of its own (a collective: before the rank-0 block)
            ranks = self._gather_to_main(process_state(resume_states(self.accelerator.unwrap_model(model))))
        if self.is_main:
            unwrapped = self.accelerator.unwrap_model(model)
            with atomic_directory(self.run_dir / name) as tmp:
                unwrapped.save_pretrained(tmp)
                if name == "last":
                    assert ranks is not None  # gathered on rank 0 above
                    save_trainer_state(
                        tmp,
                        optimizer,
                        scheduler,
                        progress,
                        ranks=ranks,
                        scaler=self.accelerator.scaler,
                    )
        self.accelerator.wait_for_everyone()

    def _gather_to_main(self, own: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every process's ``own``, in rank order, on rank 0 (None elsewhere); every process must call it."""
        if self.accelerator.num_processes == 1:
            return [own]
        gathered: list[Any] | None = [None] * self.accelerator.num_processes if self.is_main else None
        torch.distributed.gather_object(own, gathered, dst=0)
        return gathered

    def evaluate(self, model: torch.nn.Module, dataset: Dataset, collate: Any, vocab: Any) -> dict[str, Any]:
        unwrapped = self.accelerator.unwrap_model(model)
        preds = predict_dataset(
            unwrapped,
            dataset,
            collate,
            batch_size=self.config.train.eval_batch_size,
            progress=self.is_main,
            desc="dev",
            precision=self.precision,
        )
        gold = [vocab.decode(int(x)) for x in dataset.labels]  # type: ignore[attr-defined]
        predicted = [vocab.decode(int(x)) for x in preds.labels]
        return score(gold, predicted, vocab)

    # ------------------------------------------------------------------ main loop
    def fit(
        self, pipeline: Any, train_set: Dataset, dev_set: Dataset | None, resume: bool = False
    ) -> Progress:
        cfg, acc = self.config, self.accelerator
        set_seed(cfg.seed)
        last = self.run_dir / "last"
        if self.is_main:
            for name in ("last", "best"):
                recover_interrupted(self.run_dir / name)
            if not resume and (last.exists() or (self.run_dir / "metrics.jsonl").exists()):
                raise FileExistsError(
                    f"{self.run_dir} already holds a run: resume it with --resume {self.run_dir}, "
                    "or choose another --run-dir"
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.yaml", dump_config(cfg))  # a cut file could still parse
            pipeline.save(self.run_dir)
        acc.wait_for_everyone()

        resuming = resume and last.exists()
        if resume and not resuming:
            log.warning("%s has no checkpoint yet: starting from scratch", self.run_dir)
        model = pipeline.load_model(last) if resuming else pipeline.build_model()
        batches_per_epoch = math.ceil(math.ceil(len(train_set) / acc.num_processes) / cfg.train.batch_size)  # type: ignore[arg-type]
        steps_per_epoch = math.ceil(batches_per_epoch / cfg.train.grad_accum)
        total_steps = steps_per_epoch * cfg.train.epochs
        if cfg.train.max_steps is not None:
            total_steps = min(total_steps, cfg.train.max_steps)
        optimizer, scheduler = build_optimizer(model, cfg.train, total_steps)

        progress = Progress()
        banks: dict[str, Any] = {}  # the prototype banks' refresh schedules and usage (absent: an older run)
        if resuming:
            state = load_trainer_state(last)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler") is not None and acc.scaler is not None:
                acc.scaler.load_state_dict(state["scaler"])
            progress = Progress(**state["progress"])
            keep_optimizer_kernel(optimizer, cfg.train.optimizer_impl)
            own = rank_state(state, acc.process_index, acc.num_processes)
            banks = own.get("prototype_banks", {})
            set_rng_state(own["rng"])
            self._truncate_metrics(progress.epoch)
            log.info(
                "resuming at epoch %d, batch %d (step %d)",
                progress.epoch,
                progress.batch_in_epoch,
                progress.global_step,
            )

        if progress.length_buckets is None:
            # a new run draws its batches as configured; a run older than the setting used plain slices
            progress.length_buckets = 0 if resuming else cfg.train.length_buckets
        elif progress.length_buckets != cfg.train.length_buckets:
            log.warning(
                "this run drew its batches with train.length_buckets=%d: kept (the config says %d)",
                progress.length_buckets,
                cfg.train.length_buckets,
            )
        model, optimizer = acc.prepare(model, optimizer)
        load_resume_states(acc.unwrap_model(model), banks)  # on the device the banks are now on
        if self.is_main:
            log.info("precision: %s (train.precision=%s)", self.precision_label, cfg.train.precision)
        previous_handlers = self._install_signal_handlers()
        try:
            self._loop(model, optimizer, scheduler, progress, pipeline, train_set, dev_set, total_steps)
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        return progress

    def _truncate_metrics(self, completed_epochs: int) -> None:
        """Drop metric rows of epochs the checkpoint does not include (a crash after logging, before saving)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.is_main or not path.exists():
            return
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        kept = [r for r in rows if r["epoch"] <= completed_epochs]
        if len(kept) != len(rows):
            path.unlink()
            (self.run_dir / "metrics.csv").unlink(missing_ok=True)
            for row in kept:
                self._write_metrics(row)

    def _loop(
        self,
        model: torch.nn.Module,
        optimizer: Any,
        scheduler: Any,
        progress: Progress,
        pipeline: Any,
        train_set: Dataset,
        dev_set: Dataset | None,
        total_steps: int,
    ) -> None:
        cfg, acc = self.config, self.accelerator
        accum = cfg.train.grad_accum
        ckpt_every = cfg.train.checkpoint_every_steps
        buckets = progress.length_buckets or 0
        lengths = sample_lengths(train_set) if buckets else None
        while progress.epoch < cfg.train.epochs and progress.global_step < total_steps:
            epoch = progress.epoch
            order = epoch_order(len(train_set), cfg.seed, epoch, acc.process_index, acc.num_processes)  # type: ignore[arg-type]
            batches = epoch_batches(order, cfg.train.batch_size, lengths, buckets, seed=cfg.seed, epoch=epoch)
            loader = DataLoader(
                train_set,
                batch_sampler=batches[progress.batch_in_epoch :],
                collate_fn=pipeline.collate,
                num_workers=cfg.train.num_workers,
                # Its own generator: creating the loader must not draw from the global RNG, or a
                # resumed run (which builds one mid-epoch) would get different dropout masks.
                generator=torch.Generator().manual_seed(cfg.seed + epoch),
            )
            n_batches = len(batches)
            model.train()
            started = time.perf_counter() - progress.epoch_seconds  # a resumed epoch goes on counting
            running, seen = progress.epoch_loss_sum, progress.epoch_batches
            bar = progress_bar(
                loader,
                total=n_batches,
                initial=progress.batch_in_epoch,
                desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                enabled=self.is_main,
            )
            full_groups_end = n_batches - n_batches % accum  # batches after it form a smaller last group
            for batch in bar:
                batch_idx = progress.batch_in_epoch
                is_step = (batch_idx + 1) % accum == 0 or batch_idx + 1 == n_batches
                group = accum if batch_idx < full_groups_end else n_batches - full_groups_end
                batch = move_batch(batch, acc.device)
                ctx = acc.no_sync(model) if not is_step else contextlib.nullcontext()
                with ctx, acc.autocast(), autocast(self.precision, acc.device):
                    out = model(batch)
                    loss = out.loss / group  # the mean over the step's batches, a short last group too
                acc.backward(loss)
                running += float(out.loss.detach())
                seen += 1
                progress.batch_in_epoch += 1
                if is_step:
                    if cfg.train.grad_clip is not None:
                        acc.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    progress.global_step += 1
                    bar.set_postfix(loss=f"{running / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                    progress.epoch_seconds = time.perf_counter() - started
                    progress.epoch_loss_sum, progress.epoch_batches = running, seen
                    if ckpt_every and progress.global_step % ckpt_every == 0:
                        self._save("last", model, optimizer, scheduler, progress)
                    if self._should_stop():
                        self._save("last", model, optimizer, scheduler, progress)
                        bar.close()
                        raise TrainingInterrupted(
                            f"stopped by signal {self._stop_signal}; resume with --resume {self.run_dir}"
                        )
                    if progress.global_step >= total_steps:
                        break
            bar.close()
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": progress.global_step,
                "train_loss": round(running / max(seen, 1), 6),
                "epoch_seconds": round(time.perf_counter() - started, 2),
                "compute_precision": self.precision_label,
            }
            unwrapped = acc.unwrap_model(model)
            stats = getattr(unwrapped, "prototype_stats", None)
            if callable(stats):
                record["prototypes"] = stats()
            gates: dict[str, float] = getattr(unwrapped, "guidance_gates", dict)()
            if gates:
                record["guidance_gates"] = gates
            progress.epoch += 1
            progress.batch_in_epoch = 0
            progress.epoch_seconds, progress.epoch_loss_sum, progress.epoch_batches = 0.0, 0.0, 0
            has_dev = dev_set is not None and len(dev_set) > 0  # type: ignore[arg-type]
            last_epoch = progress.epoch >= cfg.train.epochs or progress.global_step >= total_steps
            evaluate = cfg.train.eval_every_epoch or last_epoch  # without it, best is the last epoch
            improved = not has_dev  # no dev set: every epoch is the best so far
            if evaluate and has_dev:
                if self.is_main:
                    dev = self.evaluate(model, dev_set, pipeline.collate, pipeline.vocab)  # type: ignore[arg-type]
                    record.update({f"dev_{k}": dev[k] for k in SUMMARY_KEYS})
                    improved = dev["f1"] > progress.best_f1
                acc.wait_for_everyone()
                improved = bool(acc.gather(torch.tensor([int(improved)], device=acc.device))[0].item())
            if improved:
                progress.best_f1 = float(record.get("dev_f1", progress.best_f1))
                progress.best_epoch = epoch + 1
            progress.history.append({k: v for k, v in record.items() if k != "prototypes"})
            self._write_metrics(record)
            if improved:
                self._save("best", model, optimizer, scheduler, progress)
            self._save("last", model, optimizer, scheduler, progress)
            if self.is_main:
                log.info("epoch %d: %s", epoch + 1, {k: v for k, v in record.items() if k != "prototypes"})
            if self._should_stop():
                raise TrainingInterrupted(
                    f"stopped by signal {self._stop_signal}; resume with --resume {self.run_dir}"
                )
