"""2-photon motion correction by variational optical flow.

The engine estimates a dense displacement field from every frame to a reference and warps the
frame back (Flotho et al., 2022, "Software for non-parametric image registration of 2-photon
imaging data", J. Biophotonics, https://doi.org/10.1002/jbio.202100330), with the flow model of
Brox et al. (2004). Backends: ``flowreg`` (numba), ``diso`` (OpenCV DIS), ``flowreg_torch``
(PyTorch); add your own with :func:`register_backend`.

Conventions: videos are ``(T, H, W, C)``, images ``(H, W, C)``, displacement fields
``(..., H, W, 2)`` holding ``[u, v]`` = ``[x, y]`` in pixels with
``registered[y, x] = moving[y + v, x + u]``. See :mod:`labsession.motion.warping`.
"""

from labsession.motion._backends import (
    FlowBackend,
    available_backends,
    get_backend,
    get_displacement,
    register_backend,
)
from labsession.motion._compensate import CompensationResult, compensate_arr, compensate_recording
from labsession.motion._formats import (
    VideoFormat,
    available_video_formats,
    register_video_format,
)
from labsession.motion._options import (
    ChannelNormalization,
    ConstancyAssumption,
    InterpolationMethod,
    OFOptions,
    OutputFormat,
    QualitySetting,
)
from labsession.motion._pyflowreg_io import get_video_file_reader, get_video_file_writer
from labsession.motion._readers import VideoReader, open_video
from labsession.motion._sinks import SinkSpec, VideoSink
from labsession.motion._synthetic import synthetic_video
from labsession.motion._writers import VideoWriter

__all__ = [
    "ChannelNormalization",
    "CompensationResult",
    "ConstancyAssumption",
    "FlowBackend",
    "InterpolationMethod",
    "OFOptions",
    "OutputFormat",
    "QualitySetting",
    "SinkSpec",
    "VideoFormat",
    "VideoReader",
    "VideoSink",
    "VideoWriter",
    "available_backends",
    "available_video_formats",
    "compensate_arr",
    "compensate_recording",
    "get_backend",
    "get_displacement",
    "get_video_file_reader",
    "get_video_file_writer",
    "open_video",
    "register_backend",
    "register_video_format",
    "synthetic_video",
]
