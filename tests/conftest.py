import numpy as np
import pytest
import torch

import task_suites
from meta_mbrl import DynamicsMLP, Transitions

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: extra threads only add synchronization (and contend with other jobs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def pm_suite():
    return task_suites.make("point-mass", seed=0)


@pytest.fixture(scope="session")
def ml10_suite():
    pytest.importorskip("metaworld")
    return task_suites.make("ml10", seed=0)


def random_transitions(*shape, obs_dim=5, act_dim=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Transitions(
        torch.randn(*shape, obs_dim, generator=g, dtype=dtype),
        torch.randn(*shape, act_dim, generator=g, dtype=dtype),
        torch.randn(*shape, generator=g, dtype=dtype),
        torch.randn(*shape, obs_dim, generator=g, dtype=dtype),
    )


def small_model(obs_dim=5, act_dim=2, hidden=(16, 16), seed=0, **kw):
    torch.manual_seed(seed)
    m = DynamicsMLP(obs_dim, act_dim, hidden=hidden, **kw)
    m.fit_normalizers(random_transitions(200, obs_dim=obs_dim, act_dim=act_dim, seed=seed + 1))
    return m


def np_rng(seed=0):
    return np.random.default_rng(seed)
