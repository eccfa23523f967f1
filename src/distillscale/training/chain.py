"""Self-distillation chains ("born-again networks", Furlanello et al. 2018): `distill --generations K`.

Generation 1 is distilled from the chain's teacher, generation g from generation g - 1, every generation
with the same settings: the same size, the same data, the same half and pool of it, the same epochs. When
data is the limit (a fixed pool read for many epochs), each generation can lower the loss a little.

    results = distill_chain(config, generations=3)   # config.out/generation-1 .. generation-3

The chain's directory `config.out` is made here (or one it made before: its chain.json says so); each
generation is a run directory of its own inside it. Every generation reads the half generation 1 reads:
a student run as teacher would otherwise send its student to the other half (`teachers.OTHER_HALF`), so
the chain pins the half generation 1 recorded. The same command run again skips the finished generations
(each checked to hold the same settings) and resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillscale.errors import UserError
from distillscale.io import atomic_write_json, check_output_dir, json_format_is
from distillscale.training.config import DistillConfig
from distillscale.training.records import RunResult
from distillscale.training.run_dir import RunDirectory, input_paths

CHAIN_FILE = "chain.json"
CHAIN_FORMAT = "distillscale.chain/1"
_chain_file = json_format_is(CHAIN_FORMAT.split("/")[0] + "/")


def is_chain_dir(path: Path) -> bool:
    """Whether `path` is a chain's directory that distillscale made (its chain.json)."""
    return _chain_file(Path(path) / CHAIN_FILE)


def generation_dir(out: str | Path, generation: int) -> Path:
    """The run directory of generation `generation` (1, 2, ...) of the chain in `out`."""
    return Path(out) / f"generation-{generation}"


def check_chain(config: DistillConfig, generations: int) -> None:
    """Refuse, in one line, a chain that cannot be run: fewer than one generation, or a teacher that the
    next generations cannot follow (a logit cache, a server, a mixture: the chain's teachers are runs)."""
    if generations < 1:
        raise UserError(f"--generations {generations}: a chain has at least one generation; give --generations 1 "
                        f"or more")
    given = next((flag for flag, value in (("--teacher-cache", config.teacher_cache),
                                           ("--teacher-url", config.teacher_url)) if value is not None), None)
    if given is not None:
        raise UserError(f"--generations chains students from --teacher, each the teacher of the next: {given} "
                        f"cannot start a chain; give the teacher itself as --teacher")
    if config.is_mixture:
        raise UserError("--generations chains one teacher's students, each the teacher of the next: give "
                        "--teacher once (a mixture of teachers cannot chain)")
    if config.fork_from is not None or config.fork_tokens:
        raise UserError("--generations and WSD forks (--fork-from, --fork-tokens) do not mix: each generation is "
                        "trained whole; leave out the fork settings")


def distill_chain(config: DistillConfig, generations: int, progress: bool = True) -> list[RunResult]:
    """Distil `generations` students in a chain into `config.out`/generation-1 .. generation-K; return
    their results in order. It stops after a generation that diverged (the last result says so)."""
    from distillscale.training.distillation import distill

    from distillscale.console import each_warning_once

    check_chain(config, generations)
    out = check_output_dir(config.out, is_ours=is_chain_dir, inputs=input_paths(config),
                           what="distillscale chain directory")
    out.mkdir(parents=True, exist_ok=True)
    later = later_generations(out, generations)   # kept: the chain's record names them
    atomic_write_json(out / CHAIN_FILE, {"format": CHAIN_FORMAT, "teacher": str(config.teacher),
                                         "generations": max([generations, *later]), "asked": generations,
                                         "kept_beyond": [str(generation_dir(out, g)) for g in later]})
    results: list[RunResult] = []
    teacher, pinned = config.teacher, {}
    with each_warning_once() as said:   # a warning every generation would give (its pool read again): once
        for generation in range(1, generations + 1):
            said["label"] = f"generation {generation} of {generations} (said once for the chain)"
            step = config.model_copy(update={"teacher": teacher, "out": generation_dir(out, generation), **pinned})
            result = finished_generation(step)
            results.append(result if result is not None else distill(step, progress))
            if not results[-1].completed:
                break
            teacher = step.out
            pinned = pinned or {"split": RunDirectory(step.out).stored_config(DistillConfig).split}
    return results


def later_generations(out: str | Path, generations: int) -> list[int]:
    """The generations past the `generations` asked for that an earlier run of the chain left in `out`
    (generation-5 ..): kept, named in chain.json and said, never dropped without a word."""
    found = [int(path.name.removeprefix("generation-")) for path in Path(out).glob("generation-*")
             if path.is_dir() and path.name.removeprefix("generation-").isdigit()]
    return sorted(g for g in found if g > generations)


def later_generations_note(out: str | Path, generations: int) -> str | None:
    """One line naming the generations an earlier, longer run of the chain left beyond the ones asked for."""
    later = later_generations(out, generations)
    if not later:
        return None
    kept = f"generation-{later[0]}" + (f" .. generation-{later[-1]}" if len(later) > 1 else "")
    return (f"{kept} of an earlier, longer run of this chain stay in {out}, not reported here (chain.json names "
            f"them): --generations {later[-1]} reports them, or remove them to shorten the chain")


def finished_generation(config: DistillConfig) -> RunResult | None:
    """The result of the generation `config` names when it finished with these settings; None when it is
    to be trained (not finished, or --overwrite); a finished one of other settings is refused in one line."""
    from distillscale.training.teachers import find_teacher, resolve_student_data

    run = RunDirectory(config.out)
    if config.overwrite or not run.result_path.is_file():
        return None
    resolved = resolve_student_data(config, find_teacher(config.teacher, config.trust_remote_code),
                                    other_tokenizer=True)
    stored = run.stored_config(DistillConfig)
    if stored.hash() != resolved.hash():
        raise UserError(f"{run.path} holds a finished generation with other settings (differs in: "
                        f"{', '.join(stored.differing_keys(resolved))}): repeat its settings to go on with the "
                        f"chain, pass --overwrite to train every generation again, or choose another --out")
    return run.read_result()


@dataclass(frozen=True)
class GenerationRecord:
    """One generation of a chain as the command reports it: its run, its teacher, both validation losses
    (nats/token on the same validation split and tokenizer) and the change from the teacher's."""

    generation: int
    out: str
    teacher: str
    status: str
    val_loss: float | None
    teacher_val_loss: float

    @property
    def change(self) -> float | None:
        """The student's loss minus its teacher's (negative: the student is better), nats/token."""
        return None if self.val_loss is None else self.val_loss - self.teacher_val_loss

    def to_json(self, result: RunResult) -> dict[str, Any]:
        return {"generation": self.generation, "out": self.out, "teacher": self.teacher, "status": self.status,
                "val_loss": self.val_loss, "teacher_val_loss": self.teacher_val_loss, "change": self.change,
                "unit": "nats/token", "result": result.to_json()}


def generation_records(results: list[RunResult], out: str | Path) -> list[GenerationRecord]:
    """The chain's generations in `out` (their results from `distill_chain`), as reported."""
    return [GenerationRecord(generation=number, out=str(generation_dir(out, number)), teacher=result.teacher.path,
                             status=result.status, val_loss=result.val_loss,
                             teacher_val_loss=result.teacher.teacher_val_loss)
            for number, result in enumerate(results, start=1)]
