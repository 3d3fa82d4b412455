"""AdaptedModel: a frozen prior plus adapted parameters and/or a task vector -- the one "adapted" type."""

from __future__ import annotations

import torch

from meta_mbrl.checks import all_finite, check_obs_act, max_abs
from meta_mbrl.types import Prediction

__all__ = ["AdaptedModel", "EnsembleAdaptedModel", "check_prediction"]


def check_prediction(adapted, pred: Prediction, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
    """Returns ``pred``, or raises ValueError naming ``obs`` or ``act`` if it is not finite.

    ``predict`` checked its inputs were finite, so a non-finite prediction means the inputs are
    outside what the network can represent (normalized inputs that overflow float32 through its
    layers), or the adapted parameters themselves are out of range; the message gives both scales and
    names the input that is furthest out (``obs`` measured after normalization by the model's
    observation normalizer, as the network sees it).

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> m = DynamicsMLP(3, 1, hidden=(16,))
        >>> _ = m.obs_norm.std.fill_(1e-3)  # as fitted on data with a near-constant feature
        >>> am = AdaptedModel(m, {k: v.detach() for k, v in m.named_parameters()})
        >>> am.predict(torch.full((2, 3), 1e36), torch.zeros(2, 1))  # 1e39 after normalization: beyond float32
        Traceback (most recent call last):
        ...
        ValueError: obs: the model's prediction is not finite for these finite inputs (|obs| up to 1e+36, |act| up to 0); ...
    """
    if all_finite(*pred):
        return pred
    model = adapted.model
    norm = getattr(model, "obs_norm", None)
    with torch.no_grad():
        o_raw, a = max_abs(obs), max_abs(act)
        o = max_abs(norm.normalize(obs)) if callable(getattr(norm, "normalize", None)) else o_raw
        p = max_abs(*adapted.params.values())
        z = max_abs(adapted.task_vector) if adapted.task_vector is not None else None
    name = "obs" if not o < a else "act"
    zs = "" if z is None else f", |task_vector| up to {z:.3g}"
    raise ValueError(
        f"{name}: the model's prediction is not finite for these finite inputs (|obs| up to {o_raw:.3g}, |act| up to "
        f"{a:.3g}); the inputs are too large for this model (normalized |obs| up to {o:.3g} overflows its layers), "
        f"or its adapted parameters are out of range (|parameters| up to {p:.3g}{zs})"
    )


class _TaskBatched:
    """What every adapted model shares: dims from the network, ``len``, indexing a task out of a batch."""

    model: object
    params: dict
    num_tasks: int | None
    task_vector: torch.Tensor | None
    params_batched: bool
    _task_dim = 0  # where the task dim sits in batched parameters and the task vector

    @property
    def obs_dim(self) -> int:
        return self.model.obs_dim

    @property
    def act_dim(self) -> int:
        return self.model.act_dim

    def __getitem__(self, i: int):
        """The model of task ``i`` of a batch (for an ensemble: every member's task ``i``)."""
        if self.num_tasks is None:
            raise ValueError(f"index: this {type(self).__name__} holds a single task, not a batch")
        idx = (slice(None),) * self._task_dim + (i,)
        params = {k: v[idx] for k, v in self.params.items()} if self.params_batched else self.params
        z = None if self.task_vector is None else self.task_vector[idx]
        return type(self)(self.model, params, task_vector=z)

    def __len__(self) -> int:
        return 1 if self.num_tasks is None else self.num_tasks

    def __repr__(self) -> str:
        z = "" if self.task_vector is None else f", task_vector={tuple(self.task_vector.shape)}"
        members = f", members={self.ensemble_size}" if self._task_dim else ""
        return f"{type(self).__name__}({type(self.model).__name__}{members}, num_tasks={self.num_tasks}{z})"


class AdaptedModel(_TaskBatched):
    """A DynamicsModel for one task, or a batch of ``T`` tasks, produced by ``learner.adapt``.

    It holds a reference to the prior network (never modified), its own parameter dict and, for
    context-conditioned networks (CaDM, PEARL, task embeddings), a task vector ``z``. For a batch of
    tasks, inputs must lead with ``T``; the parameters either carry a leading task dim ``T`` (MAML,
    Reptile, fine-tuning) or are shared by all tasks while ``z`` is ``(T, Z)`` (context learners).

    Args:
        model: the prior network (e.g. :class:`~meta_mbrl.models.DynamicsMLP`).
        params: adapted parameters (plain, or task-batched with leading dim ``T``).
        num_tasks: ``None`` for a single task, else ``T``.
        task_vector: ``None``, or the task vector ``z`` passed to ``model.predict_params(..., z=z)``:
            ``(Z,)`` for one task, ``(T, Z)`` for a batch. It is broadcast over the inputs' middle
            batch dims (``obs (T, N, O)`` with ``z (T, Z)``).

    Shapes:
        single task: ``predict(obs (..., O), act (..., A))``;
        batch of tasks: ``predict(obs (T, ..., O), act (T, ..., A))``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> m = DynamicsMLP(3, 1, hidden=(16,))
        >>> am = AdaptedModel(m, {k: v.detach() for k, v in m.named_parameters()})
        >>> am.predict(torch.zeros(5, 3), torch.zeros(5, 1)).reward.shape
        torch.Size([5])
        >>> c = DynamicsMLP(3, 1, hidden=(16,), context_dim=2)
        >>> batch = AdaptedModel(c, {k: v.detach() for k, v in c.named_parameters()}, 4, task_vector=torch.zeros(4, 2))
        >>> batch.predict(torch.zeros(4, 5, 3), torch.zeros(4, 5, 1)).next_obs.shape, batch[1].task_vector.shape
        (torch.Size([4, 5, 3]), torch.Size([2]))
    """

    def __init__(self, model, params: dict[str, torch.Tensor], num_tasks: int | None = None,
                 task_vector: torch.Tensor | None = None):
        self.model = model
        self.params = params
        self.num_tasks = num_tasks
        self.task_vector = task_vector
        ref = next(iter(params.values()))
        self.dtype, self.device = ref.dtype, ref.device
        want = 1 if num_tasks is None else 2
        if task_vector is not None:
            if not isinstance(task_vector, torch.Tensor) or task_vector.dim() != want or (
                    num_tasks is not None and task_vector.shape[0] != num_tasks):
                shape = tuple(task_vector.shape) if isinstance(task_vector, torch.Tensor) else type(task_vector).__name__
                expected = "(Z,) for a single task" if num_tasks is None else f"({num_tasks}, Z) for {num_tasks} tasks"
                raise ValueError(f"task_vector: expected shape {expected}, got {shape}")
        # parameters carry a task dim unless they are the shared prior of a context-conditioned batch
        self.params_batched = num_tasks is not None and (task_vector is None or self._has_task_dim(model, params))

    @classmethod
    def from_prior(cls, model, num_tasks: int | None = None) -> AdaptedModel:
        """The unadapted network as an AdaptedModel: one task, or ``num_tasks`` copies (expanded, no memory copy)."""
        params = {k: v.detach() for k, v in model.param_dict().items()}
        if num_tasks is not None:
            params = {k: v.expand(num_tasks, *v.shape) for k, v in params.items()}
        return cls(model, params, num_tasks)

    @staticmethod
    def _has_task_dim(model, params: dict[str, torch.Tensor]) -> bool:
        own = dict(model.named_parameters()) if hasattr(model, "named_parameters") else {}
        k, v = next(iter(params.items()))
        return k in own and v.dim() == own[k].dim() + 1

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """Predicts next observation and reward (see Shapes).

        Raises:
            ValueError: on bad input (dims, dtype, device, non-finite values, task dim), or naming
                ``obs`` / ``act`` when the prediction for finite inputs is not finite (inputs too large
                for the model; see :func:`check_prediction`).
        """
        self.check_inputs(obs, act)
        return check_prediction(self, self.predict_unchecked(obs, act), obs, act)

    def check_inputs(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        """Raises ValueError unless ``(obs, act)`` fit ``predict``: dims, dtype, device, finiteness, task dim."""
        check_obs_act(obs, act, obs_dim=self.obs_dim, act_dim=self.act_dim, dtype=self.dtype, device=self.device)
        if self.num_tasks is not None and (obs.dim() < 2 or obs.shape[0] != self.num_tasks):
            raise ValueError(
                f"obs: expected a leading task dim of {self.num_tasks} (one per adapted task), "
                f"got shape {tuple(obs.shape)}"
            )

    def predict_unchecked(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """``predict`` without input or output validation, for hot loops whose inputs were checked once.

        Planner rollouts (:func:`~meta_mbrl.planning.imagine`) call it after the first step and check
        the finiteness of the returns they accumulate instead.
        """
        if self.task_vector is None:
            return self.model.predict_params(self.params, obs, act)
        return self.model.predict_params(self.params, obs, act, z=self.task_vector)


class EnsembleAdaptedModel(_TaskBatched):
    """``E`` adapted models (an ensemble's members) with stacked parameters, all run in one forward pass.

    Produced by :meth:`meta_mbrl.meta.Ensemble.adapt` / ``prior``. Every parameter (and the task
    vector, if any) carries a leading member dim ``E`` in front of what one member's
    :class:`AdaptedModel` holds; the network runs all members in one forward pass on the stacked
    parameters (batched matmuls over the member dim).

    ``predict`` is a plain DynamicsModel prediction: the members' mean, with the spread across
    members (law of total variance: mean of the members' variances, for Gaussian members, plus the
    variance of their means) as ``next_obs_std`` / ``reward_std``. ``predict_members`` returns every
    member's prediction stacked, which is what the planners' trajectory sampling (PETS's TS-1 /
    TS-inf, :func:`meta_mbrl.planning.imagine`) consumes.

    Args:
        model: the members' network (one template; the members differ only by parameters).
        params: stacked parameters, ``(E, ...)`` in front of one member's (plain or task-batched).
        num_tasks: ``None`` for a single task, else ``T``.
        task_vector: ``None`` or the stacked task vectors, ``(E, Z)`` or ``(E, T, Z)``.

    Shapes:
        ``predict(obs (..., O), act (..., A))`` -> ``(..., ·)`` (batch of tasks: leading ``T``);
        ``predict_members(obs, act)`` -> ``(E, ..., ·)``; with ``per_member=True`` the inputs are
        ``(E, ..., ·)`` too (each member predicts its own inputs).

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> m = DynamicsMLP(3, 1, hidden=(16,))
        >>> stacked = {k: torch.stack([v.detach(), v.detach() + 0.1]) for k, v in m.named_parameters()}
        >>> ens = EnsembleAdaptedModel(m, stacked)
        >>> obs, act = torch.zeros(5, 3), torch.zeros(5, 1)
        >>> ens.predict_members(obs, act).reward.shape, ens.predict(obs, act).reward.shape
        (torch.Size([2, 5]), torch.Size([5]))
        >>> ens.member(1).predict(torch.zeros(5, 3), torch.zeros(5, 1)).reward.shape
        torch.Size([5])
    """

    _task_dim = 1

    def __init__(self, model, params: dict[str, torch.Tensor], num_tasks: int | None = None,
                 task_vector: torch.Tensor | None = None):
        ref = next(iter(params.values()))
        self.ensemble_size = int(ref.shape[0])
        bad = {k: tuple(v.shape) for k, v in params.items() if v.dim() == 0 or v.shape[0] != self.ensemble_size}
        if bad:
            raise ValueError(f"params: expected a leading member dim of {self.ensemble_size} on every tensor, got {bad}")
        if task_vector is not None and (task_vector.dim() == 0 or task_vector.shape[0] != self.ensemble_size):
            raise ValueError(f"task_vector: expected a leading member dim of {self.ensemble_size}, got shape {tuple(task_vector.shape)}")
        self.model, self.params, self.num_tasks, self.task_vector = model, params, num_tasks, task_vector
        self._first = self.member(0)  # validates one member's shapes, and checks inputs for ``predict``
        self._cache = None
        self.dtype, self.device = ref.dtype, ref.device
        self.params_batched = self._first.params_batched

    @property
    def delta_scale(self) -> torch.Tensor | None:
        """The prior's Δobs normalizer std ``(O,)`` (the units the members' disagreement is measured in), or None.

        :func:`meta_mbrl.planning.imagine`'s information bonus divides the members' next-observation
        variance by its square, so the bonus is in the normalized Δobs units the members were trained on.
        """
        std = getattr(getattr(self.model, "delta_norm", None), "std", None)
        return std if isinstance(std, torch.Tensor) else None

    def member(self, e: int) -> AdaptedModel:
        """Member ``e`` as a plain :class:`AdaptedModel` (views, no copy)."""
        if not -self.ensemble_size <= e < self.ensemble_size:
            raise ValueError(f"e: expected a member index in [0, {self.ensemble_size}), got {e}")
        z = None if self.task_vector is None else self.task_vector[e]
        return AdaptedModel(self.model, {k: v[e] for k, v in self.params.items()}, self.num_tasks, task_vector=z)

    def check_inputs(self, obs: torch.Tensor, act: torch.Tensor, per_member: bool = False) -> None:
        """Raises ValueError unless ``(obs, act)`` fit ``predict`` (``predict_members`` with ``per_member``)."""
        if per_member:
            check_obs_act(obs, act, obs_dim=self.obs_dim, act_dim=self.act_dim, dtype=self.dtype, device=self.device)
            if obs.dim() < 2 or obs.shape[0] != self.ensemble_size:
                raise ValueError(f"obs: expected a leading member dim of {self.ensemble_size} (per_member=True), "
                                 f"got shape {tuple(obs.shape)}")
            obs, act = obs[0], act[0]
        self._first.check_inputs(obs, act)

    def predict_members(self, obs: torch.Tensor, act: torch.Tensor, per_member: bool = False) -> Prediction:
        """Every member's prediction, stacked along a leading ``E`` dim (see Shapes); validates inputs and outputs."""
        self.check_inputs(obs, act, per_member)
        return check_prediction(self, self.predict_members_unchecked(obs, act, per_member), obs, act)

    def _layout(self) -> tuple[str, dict[str, torch.Tensor], torch.Tensor | None]:
        """How the stacked members map onto the network's task-batched forward (computed once).

        ``"flat"``: task-batched members ``(E, T, ...)`` fold into ``E * T`` parameter sets, inputs
        ``(E, T, ...)`` into ``(E * T, ...)``. ``"member"``: one parameter set per member, ``E`` is the
        network's task dim and a task vector ``(E, [T,] Z)`` is a prefix of the inputs' batch dims.
        """
        if self._cache is None:
            params, z = self.params, self.task_vector
            if self.params_batched and all(v.stride(1) == 0 for v in params.values()):
                params = {k: v[:, 0] for k, v in params.items()}  # an expanded prior: one set per member
                mode = "member"
            elif self.params_batched:
                e, t = self.ensemble_size, self.num_tasks
                params = {k: v.reshape(e * t, *v.shape[2:]) for k, v in params.items()}
                z = None if z is None else z.reshape(e * t, *z.shape[2:])
                mode = "flat"
            else:
                mode = "member"
            # weights (S, out, in) stored column-major (an (S, in, out) buffer, transposed back): the network's
            # batched matmul ``h @ w.transpose(1, 2)`` then reads a contiguous operand (~1.3x faster on CPU)
            params = {k: v.transpose(-1, -2).contiguous().transpose(-1, -2) if v.dim() == 3 else v for k, v in params.items()}
            self._cache = (mode, params, z)
        return self._cache

    def predict_members_unchecked(self, obs: torch.Tensor, act: torch.Tensor, per_member: bool = False) -> Prediction:
        """:meth:`predict_members` without input validation (planner rollouts).

        All members run in one forward pass of the network on stacked parameters (batched matmuls
        over the member dim, as ``torch.func.vmap`` would lower it, without vmap's per-op dispatch).
        """
        e = self.ensemble_size
        if not per_member:
            obs, act = obs.expand(e, *obs.shape), act.expand(e, *act.shape)
        mode, params, z = self._layout()
        if mode == "flat":
            lead = obs.shape[:-1]
            obs, act = obs.reshape(-1, *obs.shape[2:]), act.reshape(-1, *act.shape[2:])
        out = self.model.predict_params(params, obs, act) if z is None else self.model.predict_params(params, obs, act, z=z)
        if mode == "flat":
            out = Prediction(*(None if x is None else x.reshape(*lead, *x.shape[len(lead) - 1:]) for x in out))
        return out

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """The members' mean prediction and their spread (see the class docstring); validates inputs and outputs."""
        self.check_inputs(obs, act)
        return check_prediction(self, self.predict_unchecked(obs, act), obs, act)

    def predict_unchecked(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """:meth:`predict` without input validation."""
        p = self.predict_members_unchecked(obs, act)
        # the spread by hand: torch.var over the leading dim measured ~35x slower on CPU (a third of the
        # whole ensemble call at planner sizes)
        mean_o, mean_r = p.next_obs.mean(0), p.reward.mean(0)
        var_o, var_r = (p.next_obs - mean_o).square_().mean(0), (p.reward - mean_r).square_().mean(0)
        if p.next_obs_std is not None:
            var_o = var_o + p.next_obs_std.square().mean(0)
            var_r = var_r + p.reward_std.square().mean(0)
        return Prediction(mean_o, mean_r, var_o.sqrt_(), var_r.sqrt_())
