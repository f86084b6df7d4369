"""SLURM submission: an sbatch array for stage 1 and a dependent job for stages 2 and 3.

``write_slurm_scripts`` writes two scripts into ``<output_root>/slurm/``:

- ``stage1.sbatch``: ``#SBATCH --array=1-N`` (N = recordings found now), each task running
  ``labsession motion run --config <file> --stage 1 --array``;
- ``stage23.sbatch``: one job running stages 2 and 3, submitted by :func:`submit_slurm` with
  ``--dependency=afterok:<array job id>`` so it starts once every array task succeeded.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from labsession.core.atomic import atomic_write_text
from labsession.errors import MotionSessionError
from labsession.motion.session._config import SessionConfig
from labsession.motion.session._discover import discover_recordings

__all__ = ["submit_slurm", "write_slurm_scripts"]

logger = logging.getLogger(__name__)


def _header(name: str, *, time: str, cpus: int, mem: str, partition: str | None) -> str:
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --time={time}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --mem={mem}",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    return "\n".join(lines)


def write_slurm_scripts(
    config_path: str | Path,
    *,
    config: SessionConfig | None = None,
    time: str = "04:00:00",
    cpus: int = 4,
    mem: str = "16G",
    partition: str | None = None,
    python: str | None = None,
    of_params: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write the stage-1 array script and the stage-2/3 script; return their paths.

    Parameters
    ----------
    config_path
        The session config file the jobs read (made absolute).
    config
        The loaded config (default: read from ``config_path``).
    time, cpus, mem, partition
        ``#SBATCH`` resources of each job (``--time``, ``--cpus-per-task``, ``--mem``,
        ``--partition``).
    python
        Interpreter that runs ``-m labsession.cli`` (default: this one, ``sys.executable``).
    of_params
        ``k=v`` OFOptions overrides passed on to ``--of-params``.
    """
    config_path = Path(config_path).resolve()
    config = config or SessionConfig.from_file(config_path)
    n = len(discover_recordings(config))
    folder = config.output_dir / "slurm"
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    base = [python, "-m", "labsession.cli", "motion", "run", "--config", str(config_path)]
    extra: list[str] = []
    for item in of_params or []:
        extra += ["--of-params", item]
    stage1_cmd = shlex.join([*base, "--stage", "1", "--array", *extra])
    stage2_cmd = shlex.join([*base, "--stage", "2", *extra])
    stage3_cmd = shlex.join([*base, "--stage", "3", *extra])
    resources = {"time": time, "cpus": cpus, "mem": mem, "partition": partition}
    stage1 = folder / "stage1.sbatch"
    atomic_write_text(
        stage1,
        _header("motion-stage1", **resources)
        + f"\n#SBATCH --array=1-{n}"
        + f"\n#SBATCH --output={logs}/stage1_%A_%a.out\n\n"
        + "set -euo pipefail\n"
        + f"# one recording per task: {n} recording(s) match {config.pattern!r} "
        + f"in {config.root}\n"
        + stage1_cmd
        + "\n",
    )
    stage23 = folder / "stage23.sbatch"
    atomic_write_text(
        stage23,
        _header("motion-stage23", **resources)
        + f"\n#SBATCH --output={logs}/stage23_%j.out\n\n"
        + "set -euo pipefail\n"
        + "# submitted with --dependency=afterok:<stage-1 array job id>\n"
        + f"{stage2_cmd}\n{stage3_cmd}\n",
    )
    for script in (stage1, stage23):
        mode = script.stat().st_mode
        script.chmod(mode | (mode & 0o444) >> 2)  # executable wherever readable (chmod +x)
    logger.info("wrote %s and %s (array of %d tasks)", stage1, stage23, n)
    return stage1, stage23


def _sbatch(args: list[str]) -> str:
    executable = shutil.which("sbatch")
    if executable is None:
        raise MotionSessionError(
            "sbatch was not found on PATH: run on a SLURM login node, or submit the written "
            "scripts yourself (sbatch stage1.sbatch; sbatch --dependency=afterok:<id> "
            "stage23.sbatch)"
        )
    done = subprocess.run(
        [executable, "--parsable", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise MotionSessionError(
            f"sbatch {' '.join(args)} failed with exit code {done.returncode}: "
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
    job = done.stdout.strip().split(";")[0]  # --parsable prints "<id>[;cluster]"
    if not job:
        raise MotionSessionError(f"sbatch {' '.join(args)} printed no job id")
    return job


def submit_slurm(stage1_script: Path, stage23_script: Path) -> tuple[str, str]:
    """Submit the array, then stages 2-3 with ``--dependency=afterok:<array id>``.

    Returns
    -------
    tuple of str
        The two job ids.

    Raises
    ------
    MotionSessionError
        If ``sbatch`` is missing or refuses a script (its message is included).
    """
    array_id = _sbatch([str(stage1_script)])
    final_id = _sbatch([f"--dependency=afterok:{array_id}", str(stage23_script)])
    logger.info("submitted stage 1 as job %s and stages 2-3 as job %s", array_id, final_id)
    return array_id, final_id
