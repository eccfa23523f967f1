"""The distillation recipe: `distill(config) -> result`, the supervised recipe with a teacher.

The student trains on the half of the corpus its teacher did not see ("student" for a teacher
trained on "teacher", as `train` does by default; "student" for Hugging Face teachers), with the
teacher's tokenizer, to minimise (1 - lambda) CE + lambda KD + lambda_z Z (docs/science.md §5)
through the chunked `distillation_loss`. Everything else (optimizer, schedule, resume, DDP,
metrics, divergence) is the supervised recipe's. result.json adds the teacher (its validation loss
on the same split, its size), the KD settings, and the teacher's forward FLOPs in `flops`; the
student's `val_loss` stays the cross-entropy against the data, as the distillation law wants.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from distillscale.console import warn
from distillscale.data import iter_eval_batches
from distillscale.data.prepared import PreparedData
from distillscale.data.tokenizer import load_tokenizer, tokenizer_vocab_size
from distillscale.errors import UserError
from distillscale.training.config import DistillConfig
from distillscale.training.teacher_options import teacher_location, teacher_name
from distillscale.training.cross_tokenizer import (
    CrossTokenizerObjective,
    TokenAligner,
    teacher_text_loss,
)
from distillscale.training.distributed import Distributed
from distillscale.training.evaluation import bf16_autocast, evaluate
from distillscale.training.logit_cache.distill import distill_from_cache
from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.mixture import (
    MixtureInfo,
    MixtureTeacher,
    RoutedSampler,
    ServedMixtureSampler,
    normalised_weights,
    route_shares,
    routed_loss,
    served_mixture_losses,
    served_mixture_record,
    served_mixture_top_k,
)
from distillscale.training.losses import LossOutput, distillation_loss
from distillscale.training.objective import ObjectiveRecord
from distillscale.training.on_policy import (
    OnPolicyObjective,
    OnPolicySampler,
    OnPolicySchedule,
    on_policy_loss_config,
)
from distillscale.training.parallel import is_sharded, shard_teacher
from distillscale.training.recipe import FLOPS_METHOD, train
from distillscale.training.records import DistillationRecord, RunPlan, RunResult
from distillscale.training.run_dir import RunDirectory
from distillscale.training.remote_teacher import (
    ServedOnPolicySampler,
    ServedRolloutObjective,
    ServedTeacherObjective,
    ServedTeacherSampler,
    TeacherClient,
    served_teacher_loss,
)
from distillscale.training.teachers import (
    Teacher,
    TeacherSource,
    check_teacher_data,
    compute_dtype,
    find_teacher,
    load_teacher,
    resolve_student_data,
    same_tokenizer,
    shared_text,
    tokenizer_difference,
    warn_moved_documents,
)
from distillscale.training.top_k import CHECK_TOKENS, TAIL_KNOWN, check_top_k_mass, teacher_log_probs


class DistillationObjective:
    """The student's loss against the data and the teacher's distribution at each position.

    The teacher's hidden states are computed once per batch without gradients; its logits are made
    chunk by chunk inside `distillation_loss`, so neither model's [tokens, V] logits exist at once.
    """

    def __init__(self, teacher: Teacher, loss_config: DistillationLossConfig, teacher_val_loss: float,
                 shared: dict[str, str] | None = None):
        self.teacher = teacher
        self.loss_config = loss_config
        self.teacher_val_loss = teacher_val_loss
        self.shared = shared or {}  # the teacher's training text the student read (`teachers.shared_text`)
        self.extra_flops_per_token = teacher.info.forward_flops_per_token
        self.top_k_targets = None  # the top-k check's record (`_check_live_top_k`)

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        student_hidden = model.hidden_states(inputs)
        with torch.no_grad():
            teacher_hidden = self.teacher.hidden_states(inputs)
        return distillation_loss(student_hidden.flatten(0, 1), model.head, teacher_hidden.flatten(0, 1),
                                 self.teacher.head, targets.flatten(), self.loss_config)

    def record(self, tokens: int) -> ObjectiveRecord:
        return ObjectiveRecord(
            teacher=self.teacher.info.record(self.teacher_val_loss, tokens, **self.shared),
            distillation=DistillationRecord(**self.loss_config.model_dump()), top_k_targets=self.top_k_targets,
            flops_method=f"{FLOPS_METHOD}; plus the teacher's forward pass on every training token, "
                         f"teacher.forward_flops_per_token x tokens")


def distill(config: DistillConfig, progress: bool = True) -> RunResult:
    """Distil the teacher of `config` into a new student, resuming an interrupted run.

    Returns the run's result.json record (status "completed" or "diverged", as for `train`).
    """
    if config.teacher_cache is not None:
        return distill_from_cache(config, progress)
    if config.teacher_url is not None:
        return distill_from_servers(config, progress) if config.is_mixture else distill_from_server(config, progress)
    if config.is_mixture:
        return distill_from_mixture(config, progress)
    source = find_teacher(config.teacher, config.trust_remote_code)
    config = resolve_student_data(config, source, other_tokenizer=True)
    if source.tokenizer_path is not None and not same_tokenizer(source.tokenizer_path, config.tokenizer):
        if config.on_policy_fraction > 0:
            raise UserError("--on-policy-fraction needs the teacher's tokenizer: the teacher scores the "
                            "student's sampled token ids; leave out --tokenizer")
        if config.parallel == "fsdp" and config.teacher_parallel == "shard":
            raise UserError("--teacher-parallel shard is not available for a teacher with another tokenizer "
                            "(cross-tokenizer distillation has not been tested sharded): use "
                            "--teacher-parallel replicate")
        return train(config, progress, make_objective=partial(_make_cross_tokenizer_objective, config, source))
    if config.uld_weight != DistillConfig.model_fields["uld_weight"].default:
        raise UserError(f"--uld-weight needs a teacher of another tokenizer: {config.teacher} speaks --tokenizer's "
                        f"own, so this run would not use it; leave it out")
    if config.on_policy_config() is None:
        return train(config, progress, make_objective=partial(_make_objective, config, source))
    return train(config, progress, make_objective=partial(_make_on_policy_objective, config, source),
                 make_sampler=lambda data, tokens: OnPolicySampler(tokens, config.seq_len, config.batch_size,
                                                                   config.seed))


def distill_from_mixture(config: DistillConfig, progress: bool = True) -> RunResult:
    """`distill` for several --teacher: the student's target is their weighted mixture
    (`training.mixture`); every teacher must speak the student's tokenizer."""
    paths = config.teacher_paths()
    sources = [find_teacher(teacher_location(path), config.trust_remote_code) for path in paths]
    single = config.model_copy(update={"teacher": sources[0].path, "teacher_weight": None, "teacher_route": None})
    resolved = resolve_student_data(single, sources[0])  # the first teacher's tokenizer and corpus by default
    for source in sources[1:]:  # each teacher's data checked against the student's, as the first's was
        check_teacher_data(source, resolved.data_config(), other_corpus=config.other_corpus)
    for path, source in zip(paths, sources):
        why = None if source.tokenizer_path is None else tokenizer_difference(resolved.tokenizer, source.tokenizer_path)
        if why is not None:
            raise UserError(f"teacher {source.path} speaks another tokenizer than {resolved.tokenizer} ({why}): the "
                            f"teachers of a mixture must share the student's tokenizer (a mixture across "
                            f"tokenizers is not supported); distil from it alone for cross-tokenizer distillation")
    if config.parallel == "fsdp" and config.teacher_parallel == "shard":
        raise UserError("--teacher-parallel shard is not available for a mixture of teachers: use "
                        "--teacher-parallel replicate")
    if config.uld_weight != DistillConfig.model_fields["uld_weight"].default:
        raise UserError("--uld-weight needs a teacher of another tokenizer: the teachers of a mixture speak "
                        "--tokenizer's own, so this run would not use it; leave it out")
    named = [Path(f"{teacher_name(path)}={source.path}") if teacher_name(path) else source.path
             for path, source in zip(paths, sources)]
    config = DistillConfig.model_validate(resolved.model_dump() | {
        "teacher": named, "teacher_weight": config.teacher_weight, "teacher_route": config.teacher_route})
    if config.teacher_route is not None:
        if config.on_policy_config() is not None:
            raise UserError("--teacher-route is not available with --on-policy-fraction (the student's own "
                            "continuations have no document to route by): leave one out")
        if config.unique_tokens is not None or config.top_k is not None:
            flag = "--unique-tokens" if config.unique_tokens is not None else "--top-k"
            raise UserError(f"--teacher-route is not available with {flag} yet: leave one out")
        return train(config, progress, make_objective=partial(_make_routed_objective, config, sources),
                     make_sampler=lambda data, tokens: RoutedSampler(
                         tokens, data.routes(config.split), _teacher_of_route(config, data), config.seq_len,
                         config.batch_size, config.seed))
    make_objective = partial(_make_mixture_objective, config, sources)
    if config.on_policy_config() is None:
        return train(config, progress, make_objective=make_objective)
    return train(config, progress, make_objective=partial(_make_on_policy_objective, config, sources,
                                                          make_off_policy=_make_mixture_objective),
                 make_sampler=lambda data, tokens: OnPolicySampler(tokens, config.seq_len, config.batch_size,
                                                                   config.seed))


def _make_mixture_objective(config: DistillConfig, sources: list[TeacherSource], data: PreparedData,
                            plan: RunPlan, group: Distributed) -> DistillationObjective:
    """The mixture's objective: each teacher's L_T and the mixture's own cross-entropy measured as a
    single teacher's is (`_make_objective`), then the teachers in their compute dtype."""
    autocast = bf16_autocast(group.device, plan.bf16)
    warn_moved_documents(sources, data, config, group.is_main)
    teachers, losses = [], []
    for source in sources:
        teacher = load_teacher(source, data.vocab_size, group.device, config.seq_len, config.trust_remote_code,
                               dtype=torch.float32)
        losses.append(evaluate(teacher, data.split("val"), config.seq_len, config.batch_size,
                               config.eval_tokens, group, autocast))
        teachers.append(teacher)
    weights = normalised_weights(config.teacher_weight, len(teachers))
    info = MixtureInfo(teachers=[teacher.info for teacher in teachers], weights=weights,
                       teacher_val_losses=losses, names=[teacher_name(path) for path in config.teacher_paths()])
    mixture = MixtureTeacher(teachers, weights, 1.0, info)
    mixture_loss = evaluate(mixture, data.split("val"), config.seq_len, config.batch_size, config.eval_tokens,
                            group, autocast)
    for teacher in teachers:
        teacher.to(compute_dtype(group.device))
    mixture = mixture.at_temperature(config.temperature)
    if config.compile:
        mixture.compile_trunk()
    objective = DistillationObjective(mixture, config.loss_config(data.vocab_size), mixture_loss)
    if config.top_k is not None and config.top_k < data.vocab_size:
        objective.top_k_targets = _check_live_top_k(mixture.at_temperature(1.0), data.split(config.split),
                                                    config, group)
    return objective


def _teacher_of_route(config: DistillConfig, data: PreparedData) -> np.ndarray:
    """The teacher index of each route id of the prepared corpus; a value that names no teacher is
    refused in one line."""
    names = [teacher_name(path) for path in config.teacher_paths()]
    values = data.route_values
    unknown = [value for value in values if value not in names]
    if unknown:
        shown = ", ".join("no value (the row lacks it)" if value is None else  # a long value cut at 40 characters
                          repr(value if len(str(value)) <= 40 else str(value)[:40] + "...") for value in unknown[:3])
        raise UserError(f"--teacher-route {config.teacher_route}: {shown} names no teacher (the teachers are "
                        f"{', '.join(names)}): name each teacher after a value of the field, or leave those "
                        f"rows out of --data")
    return np.array([names.index(value) for value in values], dtype=np.int64)


class RoutedDistillationObjective(DistillationObjective):
    """`DistillationObjective` with a routed mixture: each batch comes with its positions' teachers."""

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, routes: torch.Tensor) -> LossOutput:
        self.teacher.route = routes
        try:
            return super().__call__(model, inputs, targets)
        finally:
            self.teacher.route = None


def _make_routed_objective(config: DistillConfig, sources: list[TeacherSource], data: PreparedData,
                           plan: RunPlan, group: Distributed) -> RoutedDistillationObjective:
    """The routed mixture's objective: each teacher's L_T on the whole validation split, and the routed
    mixture's (each position scored by its document's teacher); weights: the teachers' token shares."""
    autocast = bf16_autocast(group.device, plan.bf16)
    teacher_of = _teacher_of_route(config, data)
    warn_moved_documents(sources, data, config, group.is_main)
    teachers, losses = [], []
    for source in sources:
        teacher = load_teacher(source, data.vocab_size, group.device, config.seq_len, config.trust_remote_code,
                               dtype=torch.float32)
        losses.append(evaluate(teacher, data.split("val"), config.seq_len, config.batch_size,
                               config.eval_tokens, group, autocast))
        teachers.append(teacher)
    shares = route_shares(data.routes(config.split), teacher_of, len(teachers))
    info = MixtureInfo(teachers=[teacher.info for teacher in teachers], weights=shares, teacher_val_losses=losses,
                       names=[teacher_name(path) for path in config.teacher_paths()], route=config.teacher_route)
    mixture = MixtureTeacher(teachers, [1.0 / len(teachers)] * len(teachers), 1.0, info)
    mixture_loss = routed_loss(mixture, data.split("val"), data.routes("val"), teacher_of,
                               config.seq_len, config.batch_size, config.eval_tokens, group.device, autocast)
    for teacher in teachers:
        teacher.to(compute_dtype(group.device))
    mixture = mixture.at_temperature(config.temperature)
    if config.compile:
        mixture.compile_trunk()
    return RoutedDistillationObjective(mixture, config.loss_config(data.vocab_size), mixture_loss)


def _make_on_policy_objective(config: DistillConfig, source, data: PreparedData,
                              plan: RunPlan, group: Distributed, make_off_policy=None) -> OnPolicyObjective:
    """The run's distillation objective on corpus batches, and the student's own continuations on
    a share of them (training/on_policy.py), on the schedule the run's plan fixes."""
    schedule = on_policy_schedule(config, plan)
    off_policy = (make_off_policy or _make_objective)(config, source, data, plan, group)
    on_policy_loss = DistillationObjective(off_policy.teacher, on_policy_loss_config(off_policy.loss_config),
                                           off_policy.teacher_val_loss)
    return OnPolicyObjective(off_policy, on_policy_loss, config.on_policy_config(), plan.student,
                             config.seq_len,
                             sequences_per_micro_batch=config.batch_size, tokens_per_step=config.tokens_per_step,
                             schedule=schedule)


def on_policy_schedule(config: DistillConfig, plan: RunPlan) -> OnPolicySchedule:
    """Which micro-batches of the run are on-policy, fixed by its plan before training; refused in one
    line when there is none, or when the run is a fork whose parent took other on-policy batches in
    the steps they share (the fork would not equal the same run from scratch)."""
    schedule = OnPolicySchedule.of(config.on_policy_config(), plan.total_steps, config.grad_accum)
    schedule.check()
    if plan.fork is not None:
        parent = RunDirectory(plan.fork.parent)
        parent_config = parent.stored_config(DistillConfig).on_policy_config()
        parent_schedule = OnPolicySchedule.of(parent_config, parent.stored_plan().total_steps, config.grad_accum)
        shared = plan.fork.branch_step * config.grad_accum
        if not schedule.agrees_with(parent_schedule, shared):
            steps = config.grad_accum
            raise UserError(
                f"--fork-from {parent.path} took its first on-policy batch at step "
                f"{parent_schedule.first // steps + 1} and this run would at step {schedule.first // steps + 1} "
                f"(--on-policy-start {config.on_policy_start:g} is a share of each run's own steps), before "
                f"the fork's cooldown at step {plan.fork.branch_step + 1}: the fork would not equal this run "
                f"from scratch; train it from scratch (leave out --fork-from) or use --on-policy-start 0")
    return schedule


def connect_checked(client: TeacherClient, config: DistillConfig, data: PreparedData, tokenizer_hint: str) -> None:
    """Ask the server which model it serves, and refuse in one line a context shorter than the run's
    prompts or a tokenizer other than the run's (`tokenizer_hint`: what to do about it)."""
    client.vocab_size = data.vocab_size
    model = client.connect()
    if model.max_model_len is not None and config.seq_len + 1 > model.max_model_len:
        raise UserError(f"--seq-len {config.seq_len} sends prompts of {config.seq_len + 1} tokens but the teacher "
                        f"server at {client.base} takes at most {model.max_model_len}: use --seq-len "
                        f"{model.max_model_len - 1} or less (vLLM: raise its --max-model-len)")
    why = model.about.tokenizer_difference(data)
    if why is not None:
        raise UserError(f"the teacher server at {client.base} speaks another tokenizer than --tokenizer "
                        f"{config.tokenizer} ({why}): {tokenizer_hint}")


def distill_from_server(config: DistillConfig, progress: bool = True) -> RunResult:
    """`distill` for a config with `teacher_url`: the student reads the teacher's top-k
    log-probabilities from the server (`training.remote_teacher`) for every batch, fetched ahead of
    the step; the server is asked which model it serves before anything is written."""
    client = TeacherClient(config.teacher_urls()[0], config.top_k, config.teacher_timeout, config.teacher_retries)

    def make_sampler(data: PreparedData, tokens: np.ndarray) -> ServedTeacherSampler:
        connect_checked(client, config, data, "give the teacher's tokenizer with --tokenizer")
        sampler = ServedOnPolicySampler if config.on_policy_config() is not None else ServedTeacherSampler
        samplers.append(sampler(client, tokens, config.seq_len, config.batch_size, config.seed))
        return samplers[-1]

    def make_objective(data: PreparedData, plan: RunPlan, group: Distributed):
        teacher_val_loss = served_teacher_loss(client, data.split("val"), config.seq_len, config.batch_size,
                                             config.eval_tokens)
        objective = ServedTeacherObjective(client, config.loss_config(data.vocab_size), teacher_val_loss, FLOPS_METHOD)
        objective.count_teacher_flops(config.seq_len)
        objective.check_top_k(data.split(config.split), config.seq_len, config.batch_size, group.is_main)
        if config.on_policy_config() is None:
            return objective
        # on-policy through the server: the student's rollouts are scored in the step (training/on_policy.py)
        schedule = on_policy_schedule(config, plan)
        samplers[-1].on_policy = schedule.is_on_policy
        on_policy_loss = ServedTeacherObjective(client, on_policy_loss_config(objective.loss_config),
                                                teacher_val_loss, FLOPS_METHOD)
        return OnPolicyObjective(objective, ServedRolloutObjective(on_policy_loss), config.on_policy_config(),
                                 plan.student, config.seq_len,
                                 sequences_per_micro_batch=config.batch_size,
                                 tokens_per_step=config.tokens_per_step, schedule=schedule)

    samplers: list[ServedTeacherSampler] = []

    return train(config, progress, make_objective=make_objective, make_sampler=make_sampler)


class ServedMixtureObjective(ServedTeacherObjective):
    """`ServedTeacherObjective` for the merged top-k of several servers (`ServedMixtureSampler`): the
    loss is the same sparse loss over the union of ids; the record lists every server."""

    def __init__(self, clients: list[TeacherClient], weights: list[float], loss_config: DistillationLossConfig,
                 losses: list[float], mixture_loss: float, vocab_size: int):
        super().__init__(clients[0], loss_config, mixture_loss, FLOPS_METHOD)
        self.clients, self.weights, self.losses, self.vocab_size = clients, weights, losses, vocab_size
        self.flops_each = [0.0] * len(clients)

    def check_top_k(self, tokens: np.ndarray, seq_len: int, batch_size: int, report: bool = True) -> None:
        """The merged targets' top-k mass on the first `CHECK_TOKENS` of the student's data, as one server's."""
        windows = [torch.cat([inputs, targets[:, -1:]], 1)
                   for inputs, targets in iter_eval_batches(tokens, seq_len, batch_size, CHECK_TOKENS)]
        _, log_probs = served_mixture_top_k(self.clients, self.weights, torch.cat(windows), self.vocab_size)
        self.top_k_targets = check_top_k_mass(log_probs, self.loss_config.top_k, "served", "known", TAIL_KNOWN,
                                              self.loss_config.top_k_tail, report)

    def count_teacher_flops(self, seq_len: int) -> None:
        """Each server's FLOPs per training token as it states them; 0 for a server of weight 0, which
        is never asked during training (`ServedMixtureSampler`)."""
        for index, client in enumerate(self.clients):
            flops = client.model.about.forward_flops_per_token if client.model else None
            asked = self.weights[index] > 0 and flops is not None
            self.flops_each[index] = flops.base + flops.per_context_token * seq_len if asked else 0.0
        self.extra_flops_per_token = sum(self.flops_each)

    def record(self, tokens: int) -> ObjectiveRecord:
        teacher = served_mixture_record(self.clients, self.weights, self.losses, self.flops_each,
                                        self.teacher_val_loss, tokens)
        return ObjectiveRecord(
            teacher=teacher, distillation=DistillationRecord(**self.loss_config.model_dump()),
            top_k_targets=self.top_k_targets,
            flops_method=f"{FLOPS_METHOD}; plus every served teacher's forward pass on every training token, as "
                         f"each server states it (teacher.teachers[i].flops; 0 where a server does not, and for "
                         f"a teacher of weight 0, never asked)")


def distill_from_servers(config: DistillConfig, progress: bool = True) -> RunResult:
    """`distill` for several --teacher-url: the student reads every server's top-k for each batch, merged
    on the union of ids with the mixture's weights (`training.mixture.merge_top_k`)."""
    if config.on_policy_config() is not None:
        raise UserError("--on-policy-fraction is not available with several --teacher-url yet: give one server, "
                        "or several --teacher in process")
    weights = normalised_weights(config.teacher_weight, len(config.teacher_urls()))
    clients = [TeacherClient(url, config.top_k, config.teacher_timeout, config.teacher_retries)
               for url in config.teacher_urls()]

    def make_sampler(data: PreparedData, tokens: np.ndarray) -> ServedMixtureSampler:
        kept = sum(1 for weight in weights if weight > 0)
        if data.vocab_size < 2 * config.top_k * kept:  # `merge_top_k` fills the union's free slots from 2K ids
            raise UserError(f"--top-k {config.top_k} from {kept} servers merges up to {config.top_k * kept} ids, "
                            f"more than half of the {data.vocab_size} ids of the vocabulary: use --top-k "
                            f"{max(1, data.vocab_size // (2 * kept))} or less")
        for client in clients:
            connect_checked(client, config, data, "the teachers of a mixture share the student's tokenizer")
        return ServedMixtureSampler(clients, weights, data.vocab_size, tokens, config.seq_len, config.batch_size,
                                    config.seed)

    def make_objective(data: PreparedData, plan: RunPlan, group: Distributed) -> ServedMixtureObjective:
        losses, mixture_loss = served_mixture_losses(clients, weights, data.split("val"), config.seq_len,
                                                     config.batch_size, config.eval_tokens)
        width = config.top_k * sum(1 for weight in weights if weight > 0)  # the union's slots
        loss_config = config.loss_config(data.vocab_size).model_copy(update={"top_k": width})
        objective = ServedMixtureObjective(clients, weights, loss_config, losses, mixture_loss, data.vocab_size)
        objective.count_teacher_flops(config.seq_len)
        objective.check_top_k(data.split(config.split), config.seq_len, config.batch_size, group.is_main)
        return objective

    return train(config, progress, make_objective=make_objective, make_sampler=make_sampler)


def _make_objective(config: DistillConfig, source: TeacherSource, data: PreparedData,
                    plan: RunPlan, group: Distributed) -> DistillationObjective:
    # L_T on the fp32 master weights under the run's autocast, as the teacher's own val_loss was measured
    # (and the student's is); then bf16 weights on CUDA for the forward passes that make the targets.
    warn_moved_documents([source], data, config, group.is_main)
    teacher = load_teacher(source, data.vocab_size, group.device, config.seq_len, config.trust_remote_code,
                           dtype=torch.float32)
    if config.parallel == "fsdp" and config.teacher_parallel == "shard":
        teacher = shard_teacher(teacher, group)  # each rank keeps 1/world_size of its blocks (in fp32)
    if plan.non_embedding_params > teacher.info.non_embedding_params and group.is_main:
        warn(f"the student ({plan.non_embedding_params:,} non-embedding parameters) is larger than the "
             f"teacher ({teacher.info.non_embedding_params:,}): allowed, but check --n-layers and --teacher")
    teacher_val_loss = evaluate(teacher, data.split("val"), config.seq_len, config.batch_size,
                                config.eval_tokens, group, bf16_autocast(group.device, plan.bf16))
    if not is_sharded(teacher):
        teacher.to(compute_dtype(group.device))
    if config.compile:  # after its validation loss, which the eager teacher computed as the teacher's own run
        teacher.compile_trunk()
    objective = DistillationObjective(teacher, config.loss_config(data.vocab_size), teacher_val_loss,
                                      shared_text(source, config))
    if config.top_k is not None and config.top_k < data.vocab_size:
        objective.top_k_targets = _check_live_top_k(teacher, data.split(config.split), config, group)
    return objective


@torch.no_grad()
def _check_live_top_k(teacher: Teacher, tokens, config: DistillConfig, group: Distributed):
    """The teacher's top-k mass on the first `CHECK_TOKENS` of the student's data (known: a live
    teacher's log-probabilities are normalised), warned about when low (`training.top_k`)."""
    device = next(teacher.parameters()).device
    masses = []
    for inputs, _ in iter_eval_batches(tokens, config.seq_len, config.batch_size, CHECK_TOKENS):
        logits = teacher.head(teacher.hidden_states(inputs.to(device)).flatten(0, 1))
        masses.append(teacher_log_probs(logits, overwrite=True).topk(config.top_k, dim=-1).values.cpu())
    return check_top_k_mass(torch.cat(masses), config.top_k, "in-process", "known", TAIL_KNOWN,
                            config.top_k_tail, report=group.is_main)


def _make_cross_tokenizer_objective(config: DistillConfig, source: TeacherSource, data: PreparedData,
                                    plan: RunPlan, group: Distributed) -> CrossTokenizerObjective:
    """A teacher with its own tokenizer: it reads the student's text re-tokenised (see `cross_tokenizer`)."""
    warn_moved_documents([source], data, config, group.is_main)
    teacher_tokenizer = load_tokenizer(source.tokenizer_path)[0]
    student_tokenizer = load_tokenizer(config.tokenizer)[0]
    teacher = load_teacher(source, tokenizer_vocab_size(teacher_tokenizer), group.device, config.seq_len,
                           config.trust_remote_code, dtype=torch.float32)  # L_T as in `_make_objective`
    if group.is_main:
        warn("the teacher's tokenizer differs from the student's: cross-tokenizer distillation (ULD's "
             "sorted-probability term + exact KL on the shared tokens, at positions aligned on the text); "
             "the distillation law was fitted for a shared vocabulary")
    aligner = TokenAligner(student_tokenizer, teacher_tokenizer, teacher.info.context)
    teacher_val_loss = teacher_text_loss(teacher, aligner, data.split("val"), config.seq_len, config.batch_size,
                                         config.eval_tokens, bf16_autocast(group.device, plan.bf16))
    teacher.to(compute_dtype(group.device))
    # the same half is the same text whatever the tokenizer (documents split by their text), not the same subset
    shared = shared_text(source, config) and {"trained_split": source.trained_split, "student_read": "split"}
    return CrossTokenizerObjective(teacher, aligner, config.loss_config(data.vocab_size), config.uld_weight,
                                   teacher_val_loss, shared)
