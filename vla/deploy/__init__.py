"""Deployment: compose `ros_bridge` nodes with the simulator, the safety gate and a policy.

sim_backend   SimRobotBackend: the MuJoCo task env as a ros_bridge RobotBackend (+ episodes)
sim_node      SimWorldNode + make_sim_robot: the simulated robot process's extras
world_topics  the simulation-only topics (ground-truth world state, episode status, reset)
world_replica the policy process's synchronized copy of the simulated world
sources       ExpertChunkSource (scripted expert), ChunkPolicySource (trained checkpoint)
gate          SafetyChunkGate: sim.safety.SafetyGate as a ros_bridge ChunkGate
factories     policy-node collaborator factories for `python -m ros_bridge.run policy`
episodes      EpisodeRunner + summaries like vla-eval
launch        DeployConfig + run_deploy (what `vla-deploy` runs)
"""
