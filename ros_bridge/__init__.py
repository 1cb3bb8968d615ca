"""rclpy nodes and numpy <-> ROS 2 message conversion.

Imports without torch. Never imports `vla`, `policies` or `sim`: the control loop (with its models
and the safety gate) and simulators reach the nodes through the Protocols in `interfaces` (injected
by `vla`).

Modules:
    interfaces     Observation, Command, Controller, Collaborators, RobotBackend
    conversions    numpy <-> Image / JointState / JointTrajectory / Float64MultiArray / Time
    config         PolicyNodeConfig, RobotNodeConfig (mirrored by ROS parameters)
    params         declare a config dataclass as validated ROS parameters
    watchdog       why the policy node must hold (pure)
    trajectory     linear trajectory interpolation (pure)
    policy_node    PolicyNode: lifecycle node, an injected controller's certified commands out every period
    robot_node     RobotNode: a ros2_control-like robot over a RobotBackend
    mock_hardware  MockHardware: a RobotBackend that mirrors commands (like ros2_control mock_components)
    run            `python -m ros_bridge.run {policy,robot}`, RosRuntime, wait_until
"""
