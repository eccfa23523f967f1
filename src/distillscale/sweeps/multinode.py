"""One large run across several nodes: a Slurm job of N nodes, one task per node, each task starting
`torchrun` for its node's devices; the ranks meet at a rendezvous on the job's first node.

This sits beside the sweep executors (executors.py), which run many small runs as one job each: here
one run spans the whole allocation. Without submitit, `examples/slurm/multinode.sbatch` does the
same with `srun` (see docs/guides/gpus.md, "Training on several GPUs and nodes").

    from distillscale.sweeps.multinode import MultiNodeRun, submit
    job = submit(MultiNodeRun(argv=("train", "--config", "big.toml", "--parallel", "fsdp"),
                              nodes=4, procs_per_node=8), folder="slurm-logs", partition="gpu")
    job.result()  # the exit status of node 0's torchrun

A run directory on a filesystem every node sees (rank 0 writes it; every rank writes its checkpoint
shards); a resubmitted job resumes it like a re-run command. A served teacher's credentials
(`--teacher-url https://user:token@host`) never reach the job's pickled arguments or a node's
command line: both hold the redacted URL, and the whole one travels in the job's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from distillscale.errors import UserError
from distillscale.urls import for_child_argv

RENDEZVOUS_PORT = 29500


@dataclass(frozen=True)
class MultiNodeRun:
    """`distillscale ARGV` run by `procs_per_node` processes on each of `nodes` nodes."""

    argv: tuple[str, ...]
    nodes: int
    procs_per_node: int
    port: int = RENDEZVOUS_PORT


def torchrun_argv(run: MultiNodeRun, rendezvous_host: str, job_id: str) -> list[str]:
    """The command each node runs: torchrun with a c10d rendezvous on `rendezvous_host` (the first node),
    which numbers the nodes itself, so every node runs the same command."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={run.nodes}",
            f"--nproc-per-node={run.procs_per_node}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous_host}:{run.port}", f"--rdzv-id={job_id}",
            "-m", "distillscale.cli", *run.argv]


def run_node(run: MultiNodeRun) -> int:
    """What one Slurm task (one node) runs under submitit: its torchrun, to the end; the exit status."""
    import submitit

    job = submitit.JobEnvironment()
    return subprocess.run(torchrun_argv(run, job.hostnames[0], job.job_id), check=False).returncode


def submit(run: MultiNodeRun, folder: str | Path, *, cluster: str | None = None, partition: str | None = None,
           timeout_min: int = 24 * 60, cpus_per_node: int = 8, gpus_per_node: int | None = None):
    """Submit `run` as one Slurm job of `run.nodes` nodes (submitit's Job; `.result()` waits for it).

    `gpus_per_node` defaults to `procs_per_node` (one process per GPU); 0 asks for none (CPU, gloo).
    `cluster="local"` runs the job on this machine through the same submitit path (one node only).
    """
    try:
        import submitit
    except ImportError:
        raise UserError("multi-node launch needs submitit: pip install 'distillscale[slurm]'") from None
    if run.nodes < 1 or run.procs_per_node < 1:
        raise UserError(f"nodes ({run.nodes}) and processes per node ({run.procs_per_node}) must be at least 1")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters = {"nodes": run.nodes, "tasks_per_node": 1, "cpus_per_task": cpus_per_node,
                  "timeout_min": timeout_min, "name": "distillscale-run"}
    gpus = run.procs_per_node if gpus_per_node is None else gpus_per_node
    if gpus:
        parameters["gpus_per_node"] = gpus
    if partition:
        parameters["slurm_partition"] = partition
    executor.update_parameters(**parameters)
    try:
        argv, secrets = for_child_argv(run.argv)
    except ValueError as error:
        raise UserError(str(error)) from None
    with _environment(secrets):  # sbatch (and the local executor) hand the submitter's environment on
        return executor.submit(run_node, replace(run, argv=tuple(argv)))


@contextmanager
def _environment(entries: dict[str, str]):
    """`entries` set in this process's environment for the block, then the environment as it was."""
    before = {name: os.environ.get(name) for name in entries}
    os.environ.update(entries)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
