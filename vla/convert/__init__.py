"""Importers of teleoperation datasets into the native zarr format (`vla-convert`).

One module per source format: `rosbag` (rosbag2, mcap or sqlite3, via `rosbags`; reading in
`rosbag_reader`), `hdf5` (ALOHA/ACT), `lerobot` (LeRobotDataset v3: Parquet + MP4), `dp` (Diffusion
Policy zarr v2).
Shared: `align` (resampling onto the control clock), `report` (what was kept, dropped or resampled),
`sink` (staged writes, validated by the project's validator, moved into place atomically; dry runs).
"""

from vla.convert.align import AlignmentStats, align, frame_clock
from vla.convert.dp import DiffusionPolicyOptions, import_dp
from vla.convert.errors import ConvertError
from vla.convert.formats import FORMATS, convert
from vla.convert.hdf5 import AlohaOptions, import_aloha
from vla.convert.lerobot import LeRobotOptions, import_lerobot
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.rosbag import import_rosbag
from vla.convert.rosbag_mapping import EpisodeSplit, InstructionSpec, RosbagMapping, StreamSpec

__all__ = [
    "FORMATS",
    "AlignmentStats",
    "AlohaOptions",
    "ConvertError",
    "ConvertReport",
    "DiffusionPolicyOptions",
    "EpisodeReport",
    "EpisodeSplit",
    "InstructionSpec",
    "LeRobotOptions",
    "RosbagMapping",
    "StreamSpec",
    "align",
    "convert",
    "frame_clock",
    "import_aloha",
    "import_dp",
    "import_lerobot",
    "import_rosbag",
]
