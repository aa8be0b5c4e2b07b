"""The controllers under test: devcluster runs them for the demo and the tests alike."""

from devcluster.controllers import RunningControllers, controller_env, run_controllers

__all__ = ["RunningControllers", "controller_env", "run_controllers"]
