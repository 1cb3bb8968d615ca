"""Deployment: compose `ros_bridge` nodes with the simulator, the safety gate and a policy.

controller    LoopController: vla.runtime.ControlLoop as the policy node's Controller (the loop vla-eval runs)
sim_backend   SimRobotBackend: the MuJoCo task env as a ros_bridge RobotBackend (+ episodes)
sim_node      SimWorldNode + make_sim_robot: the simulated robot process's extras
world_topics  the simulation-only topics (ground-truth world state, episode status, reset)
world_replica the policy process's synchronized copy of the simulated world
sources       ExpertChunkSource (scripted expert as a ChunkPolicy), load_checkpoint_policy (trained)
gate          SafetyChunkGate: sim.safety.SafetyGate as the loop's gate, interpolating like the controller
factories     policy-node collaborator factories for `python -m ros_bridge.run policy`
episodes      EpisodeRunner: episodes over ROS 2 as vla.evaluation records
launch        DeployConfig + run_deploy (what `vla-deploy` runs)
"""

# MuJoCo reads MUJOCO_GL once, at its first import, and `sim` settles it (EGL/OSMesa headless), so it
# comes before any module of this package imports mujoco (tests/test_layout.py checks each one).
import sim  # noqa: F401
