"""KnownRewardModel: a dynamics model whose reward is replaced by a known reward function of the transition."""

from __future__ import annotations

from collections.abc import Callable

import torch

from meta_mbrl.types import Prediction

__all__ = ["KnownRewardModel"]

# the model's prediction methods besides ``predict`` that the planners call (objective.py's fast paths); an
# ensemble's ``predict_members*`` stack the members in front of the inputs' dims, which the reward broadcasts over
_PREDICTS = ("predict_unchecked", "predict_members", "predict_members_unchecked")


class KnownRewardModel:
    """Plans with ``model``'s next observation and a known reward ``reward_fn(obs, act, next_obs)`` (CaDM, PETS).

    Every other attribute (``obs_dim``, ``dtype``, ``ensemble_size``, ...) is the wrapped model's, so any
    DynamicsModel (adapted, ensemble, batched over tasks) keeps its shapes; the reward's standard deviation is
    ``None`` (the function is exact). The planners' fast paths (``predict_unchecked``, ``predict_members``,
    ``predict_members_unchecked``: an ensemble's members stacked in front) get the known reward too.

    Args:
        model: a DynamicsModel (``predict(obs, act) -> Prediction``).
        reward_fn: a torch function ``(obs (..., O), act (..., A), next_obs (..., O)) -> reward (...)``, e.g. a
            suite's ``reward_fn``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import FunctionModel
        >>> model = FunctionModel(lambda o, a: (o + a, torch.zeros(o.shape[:-1])), obs_dim=1, act_dim=1)
        >>> known = KnownRewardModel(model, lambda o, a, n: n[..., 0])
        >>> known.predict(torch.ones(2, 1), torch.ones(2, 1)).reward, known.obs_dim
        (tensor([2., 2.]), 1)
    """

    def __init__(self, model, reward_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]):
        if not callable(getattr(model, "predict", None)):
            raise ValueError(f"model: expected a DynamicsModel with predict(obs, act), got {type(model).__name__}")
        if not callable(reward_fn):
            raise ValueError(f"reward_fn: expected a callable (obs, act, next_obs) -> reward, got "
                             f"{type(reward_fn).__name__}")
        self.model, self.reward_fn = model, reward_fn

    def __getattr__(self, name):
        if name in ("model", "reward_fn"):  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        attr = getattr(self.model, name)
        if name in _PREDICTS and callable(attr):
            def predict_with_known_reward(obs, act, *args, **kwargs):
                return self._replace(attr(obs, act, *args, **kwargs), obs, act)

            return predict_with_known_reward
        return attr

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        return self._replace(self.model.predict(obs, act), obs, act)

    def _replace(self, pred: Prediction, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        reward = self.reward_fn(obs, act, pred.next_obs)
        if tuple(reward.shape) != tuple(pred.reward.shape):
            raise ValueError(f"reward_fn: expected a reward of shape {tuple(pred.reward.shape)} (the model's), got "
                             f"{tuple(reward.shape)}")
        return Prediction(pred.next_obs, reward.to(pred.reward.dtype), pred.next_obs_std, None)
