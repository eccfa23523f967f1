"""The supervised training recipe: `train(config) -> result`, readable top to bottom.

Components (optimizer and schedule, objective, step, evaluation, checkpoint, metric logger, run
directory, DDP) live in their own modules; this file only wires them together. A distillation
recipe reuses all of them with a different objective.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from distillscale.console import err_console, warn
from distillscale.data import TokenSampler, prepare_data
from distillscale.data.config import MIN_VOCAB_SIZE
from distillscale.data.prepare import prepared_path
from distillscale.data.prepared import PreparedData
from distillscale.data.repetition import epochs, repetition_warning, rounded_subset_note, unique_subset
from distillscale.data.splits import SPLITS, SplitComposition
from distillscale.errors import UserError
from distillscale.io import atomic_write
from distillscale.model.hf_import import is_generic_hf
from distillscale.model.pretrained import load_start, pretrained_config, tokenizer_of
from distillscale.planning.flops import run_flops
from distillscale.planning.recipes import hyperparameter_warning
from distillscale.regime import WeightDistance
from distillscale.training.checkpoint import (
    CheckpointClock,
    Progress,
    capture_state,
    restore_branch,
    restore_state,
)
from distillscale.training.config import TrainConfig
from distillscale.training.distributed import Distributed, init_distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.evaluation import bf16_autocast, default_bf16, evaluate
from distillscale.training.fork import Branch, find_branch
from distillscale.training.hf_student import check_generic_student_run, load_hf_student
from distillscale.training.metrics import MetricLogger, training_progress
from distillscale.training.objective import Objective, SupervisedObjective
from distillscale.training.optim import build_optimizer, build_scheduler, lr_schedule
from distillscale.training.prefetch import BatchPrefetcher
from distillscale.training.records import ForkLink, RunCorpus, RunPlan, RunResult, student_fields
from distillscale.training.run_dir import RunDirectory, RunStart
from distillscale.training.sharded_checkpoint import (
    load_sharded,
    save_full_model,
    save_sharded,
)
from distillscale.training.start_lr import lr_warning
from distillscale.training.step import DivergenceWatch, StepResult, train_step
from distillscale.training.student import FamilyStudent, StudentModel
from distillscale.training.teachers import check_start_data, same_tokenizer

# Builds the objective once the data, the run's plan (model, steps, token budget) and the device are
# known (e.g. loads a teacher onto the device).
ObjectiveFactory = Callable[[PreparedData, RunPlan, Distributed], Objective]
# Builds the training batches' sampler from the data and the run's training tokens (`training_tokens`:
# the split, or its fixed subset of --unique-tokens), which it must draw from (default: `TokenSampler`
# over them). Its `batch(step, rank, world_size)` returns (inputs, targets, *extras); the extras go to
# the objective.
SamplerFactory = Callable[[PreparedData, np.ndarray], TokenSampler]

# Steps whose batches worker threads read ahead of training (0: read in the training loop); at least as
# many as the sampler's `read_workers` threads read at once.
PREFETCH_STEPS = 2
FLOPS_METHOD = ("flops = 3 x forward_flops_per_token(seq_len) x tokens (block and head matmuls plus "
                "attention scores; backward = 2 x forward), as distillscale.planning.flops.run_flops counts; "
                "a fork's flops are those of the whole run, fork.shared_flops of them spent by its parent; "
                "flops_6nd = 6 x non_embedding_params x tokens")


def train(config: TrainConfig, progress: bool = True,
          make_objective: ObjectiveFactory | None = None,
          make_sampler: SamplerFactory | None = None) -> RunResult:
    """Train one model as `config` says, resuming its run directory if it was interrupted.

    `make_objective` builds what the steps minimise (default: next-token cross-entropy with
    z-loss); it runs before anything is written, so its errors leave the run directory alone, as
    do those of `make_sampler`, which draws the training batches (e.g. with a teacher's cached logits).
    Returns the run's `RunResult` (what result.json holds): status "completed", or "diverged" when
    a non-finite loss or gradient stopped the run (the last good checkpoint is kept).
    """
    group = init_distributed(config.device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        # Bit-for-bit resume on CPU; on CUDA it would also need CUBLAS_WORKSPACE_CONFIG and slower kernels.
        torch.use_deterministic_algorithms(group.device.type == "cpu")
        with RunDirectory(config.out).writing(enabled=group.is_main):  # one writer per run directory
            result = _train(config, group, progress and group.is_main, make_objective, make_sampler)
        # Rank 0 writes the last checkpoint and result.json after the last collective; a rank that
        # tore down the gloo group meanwhile made its peer abort at exit ("terminate called").
        group.barrier()
        return result
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        group.close()


def _train(config: TrainConfig, group: Distributed, show_progress: bool,
           make_objective: ObjectiveFactory | None, make_sampler: SamplerFactory | None) -> RunResult:
    # 1. Check everything the user gave before writing anything.
    run = RunDirectory(config.out)
    start = run.plan_start(config)
    # Every rank reads the run directory before rank 0 writes to it: a rank still deciding while
    # rank 0 wrote saw a half-claimed directory (a temporary file, no config.json) and refused it.
    group.barrier()
    group.check_batch_size(config.batch_size)
    if config.parallel == "fsdp" and (config.fork_from is not None or config.fork_tokens):
        raise UserError("--parallel fsdp does not keep fork points yet: leave out --fork-tokens and "
                        "--fork-from, or use --parallel ddp")
    generic = config.student_init is not None and is_generic_hf(config.student_init)
    if config.student_init is None:
        config.model_shape(vocab_size=config.vocab_size or MIN_VOCAB_SIZE)  # shape errors before data prep
    elif generic:  # any Hugging Face causal LM (training/hf_student.py)
        check_generic_student_run(config)
    else:  # the start's shape and tokenizer; its vocabulary is checked against the tokenizer's below
        pretrained_config(config.student_init)
        check_start_data(config.student_init, config.data_config(),   # its training text not in our val split
                         other_corpus=getattr(config, "other_corpus", False))

    # 2. Data, model, optimizer.
    data_config = config.data_config()
    data = prepare_data(data_config, progress=show_progress)
    sampler = make_training_sampler(config, data, make_sampler)
    val_tokens = data.split("val")
    if len(val_tokens) <= config.seq_len:
        raise UserError(f"the validation split holds {len(val_tokens)} tokens, not enough for one "
                        f"sequence of {config.seq_len}: use more data or raise --val-fraction")
    if config.student_init is not None:
        check_start_tokenizer(config.student_init, data.directory / "tokenizer.json")
    generic_student = (load_hf_student(Path(config.student_init).expanduser(), data.vocab_size, config.seq_len,
                                       bool(getattr(config, "trust_remote_code", False))) if generic else None)
    # What the plan records about the student, either kind (the family's weights are drawn below, seeded)
    student_record = generic_student.record() if generic_student is not None else config.model_shape(data.vocab_size)
    non_embedding_params = student_record.non_embedding_params
    token_budget = config.token_budget(non_embedding_params)
    total_steps = config.steps_for(token_budget)
    repeats = repetition_warning(total_steps * config.tokens_per_step, sampler.unique_tokens, config.split,
                                 data.manifest["source"]["description"], subset=config.unique_tokens)
    rounded = rounded_subset_note(config.unique_tokens, sampler.unique_tokens, config.seq_len)
    for message in (rounded, repeats):
        if message and show_progress:
            warn(message)
    too_high = lr_warning(config.student_init, config.lr)  # a start without muP (`training.start_lr`)
    if too_high and show_progress:
        warn(too_high)
    far = hyperparameter_warning(non_embedding_params, token_budget, config.effective_lr, config.tokens_per_step,
                                 student_record.mup_multiplier, d_model=student_record.d_model)
    if far and show_progress:
        warn(far)
    schedule = lr_schedule(config, total_steps, non_embedding_params)
    plan = RunPlan(total_steps=total_steps, token_budget=token_budget, warmup_steps=schedule.warmup_steps,
                   cooldown_steps=config.cooldown_steps(total_steps), lr=config.effective_lr,
                   tokens_per_step=config.tokens_per_step, world_size=group.world_size, device=str(group.device),
                   bf16=_use_bf16(config, group.device), data_fingerprint=data.fingerprint,
                   corpus=RunCorpus.of_manifest(data.manifest, prepared=prepared_path(data_config)), **student_fields(student_record))
    if start is RunStart.RESUME and run.stored_plan().data_fingerprint != data.fingerprint:
        raise UserError(f"the data changed since the run in {run.path} started: restore it, or pass "
                        f"--overwrite to start again")
    branch = find_branch(config, plan)
    if branch is not None:
        plan = plan.model_copy(update={"fork": ForkLink(parent=str(branch.parent.path), branch_step=branch.step)})
    objective = (make_objective(data, plan, group) if make_objective is not None
                 else SupervisedObjective(z_loss_weight=config.z_loss, compile=config.compile))

    torch.manual_seed(config.seed)
    if generic_student is not None:
        student = generic_student
    else:  # random weights from the seed, or the start's
        student = FamilyStudent.starting_from(student_record, None if config.student_init is None
                                              else load_start(config.student_init, student_record))
    model = student.to(group.device)
    # ||w_t - w_0|| (Hoffer et al.), logged by the main process; w_0 is this initialisation. Not for
    # sharded runs: the main process alone does not hold the weights.
    sharded = config.parallel == "fsdp" and group.enabled
    weight_distance = WeightDistance(model) if group.is_main and not sharded else None
    # Shards the parameters in place under FSDP: before the optimizer, which must see the shards.
    training_model = TrainingModel(model, group, compile=config.compile, parallel=config.parallel,
                                   bf16=plan.bf16, activation_checkpointing=config.activation_checkpointing)
    optimizer = build_optimizer(model, plan.lr, config.weight_decay, betas=(config.adam_beta1, config.adam_beta2),
                                eps=config.adam_eps)
    scheduler = build_scheduler(optimizer, schedule)

    # 3. Resume from the last checkpoint, or start a fork where its parent branches, or from scratch;
    # claim the run directory. (A fork's w_0 is its parent's: same seed, same initialisation.)
    resumed = _resume(run, config, model, optimizer, scheduler) if start is RunStart.RESUME else None
    if resumed is not None:
        done = resumed
    elif branch is not None:
        done = restore_branch(branch.state(), model, optimizer, scheduler)
    else:
        done = Progress()
    saved_initial = run.load_initial_weights() if resumed and weight_distance is not None else None
    if saved_initial is not None:  # None for a run started before w_0 was saved: the seed rebuilt it
        weight_distance = WeightDistance(model, initial=saved_initial)
    if group.is_main:
        if start is RunStart.RESTART:
            run.clear()
        run.write_config(config, plan)
        if not resumed and weight_distance is not None:
            run.save_initial_weights(weight_distance.initial)
        atomic_write(run.tokenizer_path, lambda tmp: shutil.copyfile(data.directory / "tokenizer.json", tmp))
        if resumed:
            err_console.print(f"resuming {run.path} from step {done.step}/{total_steps}",
                              soft_wrap=True, highlight=False)
    group.barrier()

    # 4. Train.
    logger = MetricLogger(run.metrics_path, run.tensorboard_dir, done.step) if group.is_main else None
    with logger or contextlib.nullcontext():
        return _run_steps(config, plan, group, run, model, training_model, optimizer, scheduler, done,
                          objective=objective, branch=branch,
                          sampler=sampler, val_tokens=val_tokens, logger=logger,
                          weight_distance=weight_distance, show_progress=show_progress,
                          splits={name: data.composition(name) for name in SPLITS})


def check_start_tokenizer(start: Path, run_tokenizer: Path) -> None:
    """Refuse a --student-init model saved with a tokenizer other than the run's: its embedding rows
    would stand for other tokens."""
    saved = tokenizer_of(start)
    if saved is not None and not same_tokenizer(saved, run_tokenizer):
        raise UserError(f"--student-init {start} was saved with a tokenizer other than this run's "
                        f"({run_tokenizer}): its embeddings would stand for other tokens; give the tokenizer "
                        f"it was trained with (--tokenizer; for a pruned student, its teacher's)")


def training_tokens(config: TrainConfig, data: PreparedData) -> np.ndarray:
    """The tokens a run trains on: its split, or the fixed subset of `--unique-tokens` of it (from a
    logit cache, whose windows lie on the split's grid from its start: the cache's first tokens)."""
    split = data.split(config.split)
    if getattr(config, "teacher_cache", None) is not None and config.unique_tokens is not None:
        return split[:config.unique_tokens + 1]
    return unique_subset(split, config.unique_tokens, config.split)


def make_training_sampler(config: TrainConfig, data: PreparedData,
                          make_sampler: SamplerFactory | None = None) -> TokenSampler:
    """The run's sampler, over `training_tokens` whichever sampler it is (the one place the subset of
    --unique-tokens is applied); a factory that drew from other tokens is a bug, refused here."""
    tokens = training_tokens(config, data)
    if make_sampler is None:
        return TokenSampler(tokens, config.seq_len, config.batch_size, config.seed)
    sampler = make_sampler(data, tokens)
    if len(sampler.tokens) > len(tokens) or not np.may_share_memory(sampler.tokens, tokens):
        raise RuntimeError(f"{type(sampler).__name__} draws from {len(sampler.tokens):,} tokens that are not the "
                           f"run's {len(tokens):,} training tokens")
    return sampler


def _resume(run: RunDirectory, config: TrainConfig, model: StudentModel, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LambdaLR) -> Progress | None:
    """Restore the last checkpoint (sharded under FSDP, on every rank); None when there is none."""
    if config.parallel == "fsdp":
        return load_sharded(run.sharded_state_dir, model, optimizer, scheduler)
    state = run.load_state()
    return restore_state(state, model, optimizer, scheduler) if state else None


def _run_steps(config: TrainConfig, plan: RunPlan, group: Distributed, run: RunDirectory,
               model: StudentModel, training_model: TrainingModel, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LambdaLR, done: Progress, objective: Objective,
               branch: Branch | None, sampler: TokenSampler, val_tokens: np.ndarray, logger: MetricLogger | None,
               weight_distance: WeightDistance | None, show_progress: bool,
               splits: dict[str, SplitComposition]) -> RunResult:
    """Steps `done.step + 1 .. total_steps`, then the final evaluation and result.json (`splits`: what
    each split of the data is made of, recorded there)."""
    total_steps = plan.total_steps
    autocast = bf16_autocast(group.device, plan.bf16)

    def validation_loss() -> float:
        return evaluate(training_model.evaluated, val_tokens, config.seq_len, config.batch_size, config.eval_tokens,
                        group, autocast)

    def micro_batches(step: int) -> list[tuple[torch.Tensor, ...]]:  # on the host; a worker reads ahead
        return [sampler.batch(step * config.grad_accum + micro, group.rank, group.world_size)
                for micro in range(config.grad_accum)]

    checkpoint_step = done.step  # the step whose weights are on disk (0: none yet)
    clock = CheckpointClock(config.save_every_seconds, group)
    branch_steps = set(config.branch_steps())  # where forks of this run start (WSD parents only)
    segment_start, wall_before = time.perf_counter(), done.wall_seconds
    window_start, window_tokens = time.perf_counter(), 0
    val_loss = None
    watch = DivergenceWatch(group.device)
    bar = training_progress(total_steps, show_progress)
    with bar, BatchPrefetcher(micro_batches, done.step, total_steps, group.device, PREFETCH_STEPS,
                              workers=sampler.read_workers) as batches:
        task = bar.add_task("train", total=total_steps, completed=done.step, loss="-", tokens_per_second="-")
        while done.step < total_steps:
            step_start = time.perf_counter()
            # The host reads the step's numbers only where it logs, evaluates or saves: elsewhere
            # the next step is queued while the device still computes this one (step.py).
            timed = clock.due(done.step + 1)  # decided before the step, so that the step is looked at
            looks = timed or _looks_at_step(config, done.step + 1, total_steps, branch_steps)
            result = train_step(training_model, objective, optimizer, batches.next(done.step),
                                config.grad_clip, group, autocast, halted=watch.halted)
            watch.record(done.step + 1, result)
            if looks and (bad := watch.first_bad()) is not None:
                bad_step, bad_result = bad  # later steps left the weights alone: rewind to it
                done.step = bad_step - 1
                return _diverged(run, group, config, plan, done, bad_result, checkpoint_step, objective,
                                 sampler.unique_tokens, splits)
            lr = plan.lr * scheduler.lr_lambdas[0](done.step)  # the base lr (muP groups scale it)
            scheduler.step()
            done.step += 1
            done.train_seconds += time.perf_counter() - step_start
            window_tokens += config.tokens_per_step

            is_last = done.step == total_steps
            evaluates = is_last or bool(config.eval_every and done.step % config.eval_every == 0)
            if evaluates or done.step % config.log_every == 0:
                record: dict[str, Any] = {"step": done.step, "tokens": done.step * config.tokens_per_step,
                                          "loss": result.loss, "ce": result.ce, "lr": lr,
                                          "grad_norm": result.grad_norm}
                if result.kd is not None:
                    record["kd"] = result.kd
                if evaluates:
                    record["val_loss"] = val_loss = validation_loss()
                now = time.perf_counter()
                record["tokens_per_second"] = window_tokens / (now - window_start)
                window_start, window_tokens = now, 0
                if logger is not None:
                    if weight_distance is not None:
                        distance = weight_distance.compute(done.step)
                        record["weight_distance"] = distance.total
                        record |= {f"weight_distance/{layer}": value
                                   for layer, value in distance.per_layer.items()}
                    logger.log(record)
                bar.update(task, completed=done.step, loss=f"{result.loss:.3f}",
                           tokens_per_second=f"{record['tokens_per_second']:,.0f}")
            done.wall_seconds = wall_before + time.perf_counter() - segment_start
            if is_last or done.step % config.save_every == 0 or timed:
                checkpoint_step = done.step
                clock.saved()
                if config.parallel == "fsdp":  # every rank writes its shards; the whole model at the end
                    if is_last:  # first: a run killed between the two redoes the last steps, and both
                        save_full_model(model, run.path, group)
                    save_sharded(run.sharded_state_dir, model, optimizer, scheduler, done, group)
                elif group.is_main:
                    run.save_state(capture_state(model, optimizer, scheduler, done))
                    model.save(run.path)
            if done.step in branch_steps and group.is_main:
                run.save_branch(done.step, capture_state(model, optimizer, scheduler, done))

    if val_loss is None:  # resumed after the last checkpoint but before result.json
        val_loss = validation_loss()
    result = _result(config, plan, done, objective, branch, sampler.unique_tokens, splits, status="completed",
                     val_loss=val_loss)
    if group.is_main:
        run.write_result(result)
    return result


def _looks_at_step(config: TrainConfig, step: int, total_steps: int, branch_steps: set[int]) -> bool:
    """Whether the loop reads step `step`'s numbers (1-based): to log, evaluate or save at it."""
    return (step == total_steps or step % config.log_every == 0 or step % config.save_every == 0
            or bool(config.eval_every and step % config.eval_every == 0) or step in branch_steps)


def _diverged(run: RunDirectory, group: Distributed, config: TrainConfig, plan: RunPlan,
              done: Progress, step_result: StepResult, checkpoint_step: int,
              objective: Objective, unique_tokens: int, splits: dict[str, SplitComposition]) -> RunResult:
    """A non-finite loss or gradient: stop, keep the last checkpoint, record what happened."""
    result = _result(config, plan, done, objective, None, unique_tokens, splits, status="diverged", val_loss=None,
                     diverged_at_step=done.step + 1, diverged_loss=step_result.loss,
                     diverged_grad_norm=step_result.grad_norm, checkpoint_step=checkpoint_step)
    if group.is_main:
        run.write_result(result)
    return result


def _result(config: TrainConfig, plan: RunPlan, done: Progress, objective: Objective, branch: Branch | None,
            unique_tokens: int, splits: dict[str, SplitComposition], status: str, val_loss: float | None,
            **divergence: Any) -> RunResult:
    tokens = done.step * config.tokens_per_step
    extra = objective.record(tokens)
    flops_method = extra.flops_method or FLOPS_METHOD
    if plan.student_flops_method is not None:  # how a generic student's forward_flops_per_token was counted
        flops_method = flops_method.replace(FLOPS_METHOD, f"{FLOPS_METHOD}; {plan.student_flops_method}")
    forward_flops = plan.student.forward_flops_per_token(config.seq_len)
    flops = run_flops(plan.student, config.seq_len, tokens, objective.extra_flops_per_token).total + extra.extra_flops
    fork = None if branch is None else branch.record(config.tokens_per_step, flops / tokens)
    return RunResult(**{
        "status": status,
        "val_loss": val_loss,
        "val_loss_unit": "nats/token",
        "steps": done.step,
        "lr": plan.lr,
        "hidden_lr": plan.hidden_lr,
        "lr_unit": plan.lr_unit,
        "schedule": config.schedule,
        "tokens": tokens,
        "token_budget": plan.token_budget,
        "non_embedding_params": plan.non_embedding_params,
        "total_params": plan.total_params,
        "forward_flops_per_token": forward_flops,
        "flops": flops,
        "flops_6nd": 6 * plan.non_embedding_params * tokens,
        "flops_method": flops_method,
        "wall_seconds": done.wall_seconds,
        "train_seconds": done.train_seconds,
        "tokens_per_second": tokens / done.train_seconds if done.train_seconds else None,
        "config_hash": config.hash(),
        "world_size": plan.world_size,
        "device": plan.device,
        "fork": fork,
        "unique_tokens": unique_tokens,
        "epochs": epochs(tokens, unique_tokens),
        "splits": splits,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "teacher": extra.teacher,
        "distillation": extra.distillation,
        "teacher_cache": extra.teacher_cache,
        "teacher_server": extra.teacher_server,
        "on_policy": extra.on_policy,
        "top_k_targets": extra.top_k_targets,
    }, **divergence)


def _use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: on by default on GPUs that support it, off on CPU unless asked for."""
    return config.bf16 if config.bf16 is not None else default_bf16(device)
