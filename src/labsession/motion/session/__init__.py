"""Multi-recording motion session: many recordings of one field of view, corrected, aligned to
one reference and reduced to the pixels valid in all of them.

Three resumable stages (Flotho et al. 2022; pyflowreg's session pipeline):

1. :func:`run_stage1` motion-corrects each recording into ``<output_root>/<stem>/`` (in a
   process pool, on a Dask cluster, or one per HPC array task with :func:`run_stage1_array`);
2. :func:`run_stage2` aligns each recording's temporal average to the center recording's;
3. :func:`run_stage3` intersects the aligned valid masks and re-projects every recording
   onto the reference grid.

Configure with :class:`SessionConfig` (``SessionConfig.from_file("session.toml")``).
"""

from labsession.motion.session._config import DaskClusterSpec, SessionConfig
from labsession.motion.session._discover import discover_recordings, recording_dir, resolve_center
from labsession.motion.session._executors import (
    DaskExecutor,
    LocalExecutor,
    SessionExecutor,
    available_executors,
    make_executor,
    register_executor,
)
from labsession.motion.session._masks import (
    backward_valid_mask,
    compute_batch_valid_masks,
    imregister_binary,
    temporal_valid_mask,
)
from labsession.motion.session._pipeline import run_session, session_state
from labsession.motion.session._slurm import submit_slurm, write_slurm_scripts
from labsession.motion.session._stage1 import get_array_task_id, run_stage1, run_stage1_array
from labsession.motion.session._stage2 import align_average, run_stage2
from labsession.motion.session._stage3 import reproject_recording, run_stage3
from labsession.motion.session._synthetic import SyntheticSession, make_synthetic_session

__all__ = [
    "DaskClusterSpec",
    "DaskExecutor",
    "LocalExecutor",
    "SessionConfig",
    "SessionExecutor",
    "SyntheticSession",
    "align_average",
    "available_executors",
    "backward_valid_mask",
    "compute_batch_valid_masks",
    "discover_recordings",
    "get_array_task_id",
    "imregister_binary",
    "make_executor",
    "make_synthetic_session",
    "recording_dir",
    "register_executor",
    "reproject_recording",
    "resolve_center",
    "run_session",
    "run_stage1",
    "run_stage1_array",
    "run_stage2",
    "run_stage3",
    "session_state",
    "submit_slurm",
    "temporal_valid_mask",
    "write_slurm_scripts",
]
