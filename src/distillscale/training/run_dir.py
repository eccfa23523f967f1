"""The run directory: what a training run leaves on disk, and the rules that protect it.

    config.json        the resolved run config (+ its hash and the derived plan)
    model.safetensors  weights at the last checkpoint, with model_config.json (save_pretrained)
    tokenizer.json     the tokenizer the data was encoded with
    state/checkpoint.pt  resumable state: weights, optimizer, scheduler, step, RNG (one atomic file)
    state/sharded/     instead, under --parallel fsdp: the same state as per-rank shards (sharded_checkpoint.py);
                       model.safetensors is then written once, gathered, at the end
    state/initial_weights.safetensors  the initial weights w_0 of the logged ||w_t - w_0||
    state/branch-<step>.pt  a WSD run's state where a fork of it starts its cooldown (see fork.py)
    metrics.jsonl      one JSON object per logged step
    tensorboard/       event files, when tensorboard is installed
    result.json        written last; its presence means the run is over (completed or diverged)

A finished run is never overwritten without `overwrite`; an unfinished one is resumed only by the
same config; a directory that is not a run directory, or that is an input (the teacher), is never
touched, with `overwrite` or not.

One writer at a time: the process that writes a run (rank 0 of a distributed one) holds an
exclusive lock on the run directory itself (`flock`, released by the kernel when the process dies,
however it dies) from before it decides how to start until it ends; a second `train` or `distill`
on the same directory, e.g. a sweep's relaunch while an earlier attempt still trains, is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import safetensors.torch
import torch
from pydantic import ValidationError

from distillscale.errors import UserError
from distillscale.model.hf_export import HF_STUDENT_DIR
from distillscale.io import atomic_write, check_output_dir, holds_anything, is_write_leftover, unreadable
from distillscale.settings import Settings, TConfig
from distillscale.data.config import DataConfig
from distillscale.data.loss_identity import LossIdentity
from distillscale.training.config import DistillConfig, TrainConfig
from distillscale.training.teacher_options import teacher_location
from distillscale.training.records import RunPlan, RunRecord, RunResult


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run that distillscale started: its config.json is a run config record
    (a Hugging Face model directory also has a config.json, but not this one)."""
    try:
        record = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"config", "config_hash"} <= record.keys()


def read_config_json(path: Path) -> dict:
    """The config.json of the model directory `path`, refused in one line where it cannot be read or is
    not a JSON object (garbage, unreadable): said as what it is, never as a config.json missing."""
    config = path / "config.json"
    try:
        record = json.loads(config.read_text(encoding="utf-8"))
    except PermissionError:
        raise UserError(f"{config} cannot be read by this user (permission denied): make it readable") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{config} is not a readable JSON file: restore it (a run's "
                        "config.json is written by `distillscale train`, a Hugging Face model's by its "
                        "save_pretrained)") from None
    if not isinstance(record, dict):
        raise UserError(f"{config} is not a JSON object: restore it")
    return record


def input_paths(config: Settings) -> list[Path]:
    """Every path a command reads: the value of each of its settings that holds a path or several
    (the start, teachers, caches, corpus, tokenizer, fork parent; a --teacher NAME=PATH as its PATH),
    but `out`. Derived from the values, so that a setting added later is checked too."""
    paths = []
    for key in type(config).model_fields:
        value = getattr(config, key)
        for item in value if isinstance(value, list) else [value]:
            if key != "out" and isinstance(item, Path):
                paths.append((teacher_location(item) if key == "teacher" else item).expanduser())
    return paths


PRUNE_RECORD = "prune.json"  # beside the weights `prune` writes (renamed into place whole, once done)


def check_finished_model(path: Path, role: str, then: str) -> None:
    """The one rule of "a finished run" for every command that takes one's weights (a teacher, a model
    to measure or serve): every directory of weights distillscale makes with model_config.json, whichever
    command made it: a `train` or `distill` run that completed (`completed_result`), or a model `prune`
    wrote (its prune.json: the directory appears whole, once done). A Hugging Face export is a Hugging
    Face directory (`training.teachers.find_teacher`). `role` and `then` word the refusal."""
    if (path / PRUNE_RECORD).is_file() and not (path / "config.json").is_file():
        return
    completed_result(path, role, then)


def completed_result(path: Path, role: str, then: str) -> RunResult:
    """The result of the completed run in `path`, or a one-line UserError: the one completeness check
    of every command that takes a run's weights as its input (a teacher, a served teacher, an export).
    A run without result.json was interrupted: its weights are those of some checkpoint, not of the
    run. `role` names the path ("teacher run"); `then` ends the advice (", then distil from it")."""
    run = RunDirectory(path)
    if not run.result_path.is_file():
        raise UserError(f"{role} {path} has not finished (no result.json): its weights are those of its last "
                        f"checkpoint; finish it by running its `distillscale train` (or `distill`) command "
                        f"again{then}")
    result = run.read_result()
    if not result.completed:
        raise UserError(f"{role} {path} did not complete (status {result.status!r}): train a run that "
                        f"completes (e.g. with a lower --lr){then}")
    return result


class RunStart(Enum):
    NEW = "new"          # nothing there yet
    RESUME = "resume"    # an unfinished run with the same config
    RESTART = "restart"  # an earlier run that --overwrite replaces


class RunDirectory:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.result_path = self.path / "result.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.tokenizer_path = self.path / "tokenizer.json"
        self.state_path = self.path / "state" / "checkpoint.pt"
        self.initial_weights_path = self.path / "state" / "initial_weights.safetensors"
        self.sharded_state_dir = self.path / "state" / "sharded"
        self.tensorboard_dir = self.path / "tensorboard"

    # -- one writer --------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, enabled: bool = True) -> Iterator[None]:
        """Hold the run's writer lock for the block, or refuse in one line when another process
        holds it. The directory is made for the lock when it does not exist yet, and removed again
        (with the parents made for it) if the block leaves it empty, e.g. when the run is refused."""
        if not enabled:
            yield
            return
        made = self._make_directory()
        try:
            descriptor = self._lock()
            if descriptor is not None:  # the one writer: any temporary file here is a killed writer's
                self._remove_write_leftovers()
            try:
                yield
            finally:
                if descriptor is not None:
                    os.close(descriptor)  # releases the lock
        finally:
            for directory in made:  # deepest first; only while empty
                try:
                    directory.rmdir()
                except OSError:
                    break

    def _make_directory(self) -> list[Path]:
        """Make the run directory and its missing parents; return those made, deepest first ([] when
        it exists or cannot be made: `plan_start` then says what is wrong with the path)."""
        missing = [path for path in (self.path, *self.path.parents) if not path.exists()]
        try:
            self.path.mkdir(parents=True)
        except OSError:
            return []
        return missing

    def _remove_write_leftovers(self) -> None:
        for directory in (self.path, self.path / "state"):
            if directory.is_dir():
                for entry in directory.iterdir():
                    if is_write_leftover(entry):
                        entry.unlink(missing_ok=True)

    def _lock(self) -> int | None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return None
        try:
            descriptor = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None  # not a directory we can open: plan_start refuses it
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UserError(f"another process is writing the run in {self.path} (a `train` or `distill` still "
                            f"running, e.g. one an earlier sweep started): wait for it to end, or stop it "
                            f"first (fuser -v {self.path})") from None
        except OSError:  # a file system without locks (some network mounts): go on unlocked
            os.close(descriptor)
            return None
        return descriptor

    # -- deciding what to do (read-only) -------------------------------------------------------

    def plan_start(self, config: TrainConfig) -> RunStart:
        """Decide between a new run, a resume and a restart, or refuse; changes nothing on disk."""
        check_output_dir(self.path, is_ours=is_run_dir, inputs=input_paths(config), what="distillscale run directory")
        if not self.path.exists() or not holds_anything(self.path):
            return RunStart.NEW
        if self.result_path.exists():
            if config.overwrite:
                return RunStart.RESTART
            result = self._read_json(self.result_path)
            raise UserError(f"{self.path} holds a finished run (status {result.get('status', '?')}, "
                            f"val_loss {result.get('val_loss', '?')}): pass --overwrite to train it "
                            f"again, or choose another --out")
        if config.overwrite:
            return RunStart.RESTART
        stored = self.stored_config(type(config))
        if stored.hash() != config.hash():
            changed = ", ".join(stored.differing_keys(config))
            raise UserError(f"{self.path} holds an unfinished run with a different config "
                            f"(differs in: {changed}): repeat its settings to resume it, pass "
                            f"--overwrite to replace it, or choose another --out")
        return RunStart.RESUME

    def stored_config(self, config_class: type[TConfig] = TrainConfig) -> TConfig:
        """The config the run was started with, read as `config_class` (a train or a distill run)."""
        record = RunRecord.load(self.config_path)
        try:
            return config_class.model_validate(record.config.settings())
        except ValidationError:
            kind = "distill" if config_class.__name__.startswith("Distill") else "train"
            raise UserError(f"{self.config_path} is not the config of a `{kind}` run (a run of another "
                            f"command?): give that command, or choose another --out") from None

    def recorded_config(self) -> TrainConfig | None:
        """The config the run was started with, as its own command's (a `DistillConfig` for a distill run,
        a `TrainConfig` for a train run), read as recorded, without re-checking how the settings combine
        (a teacher moved since still reads); None where there is no run config to read (a `prune` output)."""
        try:
            record = RunRecord.load(self.config_path)
        except UserError:
            return None
        kind = DistillConfig if record.config.distilled else TrainConfig
        try:
            return kind.model_construct(**{key: value for key, value in record.config.settings().items()
                                           if key in kind.model_fields})
        except (ValidationError, TypeError, ValueError):
            return None

    def stored_plan(self) -> RunPlan:
        return RunRecord.load(self.config_path).plan

    def recorded_data(self) -> tuple[DataConfig, str] | None:
        """(the data config the run trained with, the fingerprint of the data it trained on), from its
        config.json (a train or a distill run); None when it has none that can be read."""
        config = self.recorded_config()
        if config is None:
            return None
        try:
            data = config.data_config()
        except (ValidationError, TypeError, ValueError):
            return None
        plan = self.stored_plan()
        if plan.corpus is not None and plan.corpus.read_from is not None and data.path is not None:
            data = data.model_copy(update={"path": plan.corpus.read_from})   # as it resolved: from any directory
        return data, plan.data_fingerprint

    def data_to_read(self, role: str = "run") -> DataConfig:
        """The data the run trained on, to read again (a reader of its own corpus with no --data of its
        own); refused in one line when the run records none, or what it read is no longer where it read it
        (a `data prepare` directory removed, a corpus moved): the path the user never gave is named as the
        run's, with what to give instead."""
        from distillscale.data.sources import BUILTIN_PREFIX, GLOB_CHARACTERS

        recorded = self.recorded_data()
        if recorded is None:
            raise UserError(f"{role} {self.path} records no data settings: give --data, the corpus to read")
        data = recorded[0]
        path = data.path
        if path is not None and not path.startswith(BUILTIN_PREFIX) and not GLOB_CHARACTERS & set(path) \
                and not Path(path).expanduser().exists():
            raise UserError(f"{role} {self.path} trained on data read from {path}, which is no longer there: give "
                            f"--data, its corpus (split as the {role} did) or a `distillscale data prepare` directory "
                            f"of it")
        return data

    def loss_identity(self) -> LossIdentity | None:
        """What the run's val_loss is (`data.loss_identity`): nats/token of its tokenizer on the val split
        of the data it trained with, read from that prepared data when it is still in its cache; else
        the split named by the data's fingerprint alone. None: the run records no data."""
        from distillscale.data.loss_identity import TextIdentity, loss_identity, prepared_loss_identity
        from distillscale.data.prepare import prepared_directory
        from distillscale.data.prepared import open_prepared

        recorded = self.recorded_data()
        if recorded is None:
            return None
        data, fingerprint = recorded
        try:
            return prepared_loss_identity(open_prepared(prepared_directory(data, fingerprint)))
        except UserError:  # the prepared data is gone: what the run itself records
            tokenizer = loss_identity(self.tokenizer_path).tokenizer if self.tokenizer_path.is_file() else None
            return LossIdentity(tokenizer=tokenizer, text=TextIdentity(
                name=str(data.path or "the default corpus"), split="val", data_fingerprint=fingerprint))

    # -- writing -------------------------------------------------------------------------------

    def clear(self) -> None:
        """Remove what an earlier run wrote (for --overwrite); other files are left alone."""
        for name in ("result.json", "config.json", "metrics.jsonl", "model.safetensors",
                     "model_config.json", "tokenizer.json"):
            (self.path / name).unlink(missing_ok=True)
        for name in ("state", "tensorboard", HF_STUDENT_DIR):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def write_config(self, config: TrainConfig, plan: RunPlan) -> None:
        RunRecord(config=config.record(), config_hash=config.hash(), plan=plan).save(self.config_path)

    def write_result(self, result: RunResult) -> None:
        result.save(self.result_path)

    def read_result(self) -> RunResult:
        return RunResult.load(self.result_path)

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.state_path, partial(_torch_save, state))

    def load_state(self) -> dict[str, Any] | None:
        """The last checkpoint, or None when the run never reached one."""
        if not self.state_path.exists():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise unreadable("training state", self.state_path, exc) from None

    def branch_path(self, step: int) -> Path:
        return self.path / "state" / f"branch-{step:09d}.pt"

    def save_branch(self, step: int, state: dict[str, Any]) -> None:
        atomic_write(self.branch_path(step), partial(_torch_save, state))

    def load_branch(self, step: int) -> dict[str, Any]:
        try:
            return torch.load(self.branch_path(step), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise unreadable("fork point", self.branch_path(step), exc) from None

    def save_initial_weights(self, weights: dict[str, torch.Tensor]) -> None:
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
        atomic_write(self.initial_weights_path, lambda tmp: safetensors.torch.save_file(tensors, tmp))

    def load_initial_weights(self) -> dict[str, torch.Tensor] | None:
        """The initial weights, or None for a run started before they were saved."""
        if not self.initial_weights_path.exists():
            return None
        try:
            return safetensors.torch.load_file(self.initial_weights_path)
        except Exception as exc:
            raise unreadable("initial weights", self.initial_weights_path, exc) from None

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise unreadable("run file", path, exc) from None


def _torch_save(state: dict[str, Any], path: str) -> None:
    # Through a file object: torch.save given a name derives its archive's name from it, and rejects
    # the dot-names of temporary files.
    with open(path, "wb") as file:
        torch.save(state, file)
