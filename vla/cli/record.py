"""`vla-record dataset=<store.zarr>`: record teleoperation episodes from ROS 2 topics.

Composes `configs/record.yaml`, opens (or creates) the store, saves the resolved config beside it as
`<store>.record.yaml` and spins `ros_bridge.recorder_node.RecorderNode` with a
:class:`vla.record.ZarrEpisodeSink` until Ctrl-C. Episodes start/stop on the control topic
("start" / "stop" / "discard") or the `~/start`, `~/stop`, `~/discard` Trigger services. An episode
still being recorded at Ctrl-C is discarded (stop it first to keep it); a crash or kill keeps every
stored episode intact.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry

COMMAND = Command(
    prog="vla-record",
    config="record",
    summary="record teleoperation episodes from ROS 2 topics into a zarr store (start/stop on a topic or service)",
    examples=(
        "vla-record dataset=data/teleop.zarr",
        "vla-record dataset=data/teleop.zarr 'recorder.camera_names=[front]'",
    ),
)


def run(cfg: DictConfig) -> int:
    import rclpy

    from ros_bridge.config import from_parameters
    from ros_bridge.recorder_node import RecorderConfig, RecorderNode
    from ros_bridge.run import spin_until_shutdown
    from vla.data import DatasetError
    from vla.record import ZarrEpisodeSink, record_meta

    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    try:
        rcfg = from_parameters(RecorderConfig, dict(resolved["recorder"]))
    except (ValueError, TypeError) as e:
        print(f"error: configs/record.yaml recorder: {e}", file=sys.stderr)
        return 2
    out = Path(str(resolved["dataset"]))
    meta = record_meta(
        fps=rcfg.record_rate_hz,
        camera_names=list(rcfg.camera_names),
        robot=str(resolved["robot"]["name"]),
        joint_names=list(resolved["dataset_joint_names"]),
        extra={"record_config": resolved},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sink = ZarrEpisodeSink.open_or_create(out, meta)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (out.parent / f"{out.name}.record.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    rclpy.init()
    try:
        node = RecorderNode(sink, rcfg, node_name=str(resolved["node_name"]))
        node.get_logger().info(
            f"recording into {out} ({sink.rb.n_episodes} episodes so far); start/stop on "
            f"{rcfg.control_topic} or ~/start, ~/stop"
        )
        spin_until_shutdown(node)
    finally:
        if sink.recording:
            print(f"[vla-record] discarded the unfinished episode ({sink.n_frames} frames)", file=sys.stderr)
            sink.end(keep=False)
        rclpy.try_shutdown()
    print(f"[vla-record] {out}: {sink.rb.n_episodes} episodes")
    return 0


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    return run(cfg)


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
