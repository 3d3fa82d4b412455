"""Planning: objectives from a dynamics model, sampling planners, and the MPC controller.

``make_objective(model, obs)`` turns any DynamicsModel into ``actions -> returns``; a planner
(:class:`CEM`, :class:`MPPI`, :class:`RandomShooting`, :class:`HierarchicalPlanner`) maximizes it with ``plan(objective, init_mean)``;
:class:`MPCController` keeps the warm start and acts. Everything is batched over ``B`` envs.

Example:
    >>> import numpy as np
    >>> from meta_mbrl.models import FunctionModel
    >>> from meta_mbrl.planning import CEM, MPCController
    >>> model = FunctionModel(lambda o, a: (o + 0.1 * a, -o.square().sum(-1)), obs_dim=2, act_dim=2)
    >>> mpc = MPCController(CEM([-1.0, -1.0], [1.0, 1.0], horizon=5, population=100, seed=0), num_envs=3)
    >>> mpc.act(np.ones((3, 2)), model).shape
    (3, 2)
"""

from meta_mbrl.planning.base import ObjectiveFn, Planner, colored_noise
from meta_mbrl.planning.cem import CEM
from meta_mbrl.planning.hierarchical import HierarchicalPlanner, SubgoalModel
from meta_mbrl.planning.mpc import MPCController
from meta_mbrl.planning.mppi import MPPI
from meta_mbrl.planning.objective import Objective, imagine, make_objective
from meta_mbrl.planning.random_shooting import RandomShooting

__all__ = [
    "CEM", "HierarchicalPlanner", "MPCController", "MPPI", "Objective", "ObjectiveFn", "Planner", "RandomShooting",
    "SubgoalModel", "colored_noise",
    "imagine", "make_objective",
]
