"""Videos of an adapted agent: render one task's evaluation episode after the meta-learning protocol, as a GIF.

:func:`rollout_frames` runs the protocol of :func:`~meta_mbrl.evaluation.protocol_evaluation` for one
task with a one-env agent (``init``, adaptation episodes of ``adapt_action`` / ``step``, ``adapt()``)
and renders its evaluation episode (``eval_action``); :func:`save_gif` writes the frames;
:func:`record_episodes` does both for several tasks.

Meta-World renders offscreen through MuJoCo, which on a machine without a display needs an EGL (or
OSMesa) OpenGL backend chosen with ``MUJOCO_GL``. Importing this module sets ``MUJOCO_GL=egl`` when it
is unset, MuJoCo is not imported yet and the EGL library exists (set before ``import mujoco``, it also
selects MuJoCo's own context class); :func:`render_env` sets it too if it is still unset, since
Gymnasium's MuJoCo renderer reads it when the first frame is drawn. Anything that keeps a frame from
being rendered is a :class:`RenderUnavailable` with a one-line reason.

Example:
    >>> import task_suites
    >>> suite = task_suites.make("point-mass")
    >>> env = render_env(suite, suite.test_tasks[0])
    >>> env.render().shape
    (192, 192, 3)
    >>> env.close()
"""

from __future__ import annotations

import ctypes.util
import os
import sys

if "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules and ctypes.util.find_library("EGL"):
    os.environ["MUJOCO_GL"] = "egl"

import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from meta_mbrl.evaluation.plots import INSTALL_HINT, OptionalDependencyError  # noqa: E402
from meta_mbrl.io import atomic_path  # noqa: E402

__all__ = ["RenderUnavailable", "render_env", "rollout_frames", "save_gif", "record_episodes"]

POINT_MASS_SCALE = 3  # point-mass frames are 64x64; shown 3x larger (nearest neighbour), 192x192


class RenderUnavailable(RuntimeError):
    """No frame could be rendered; the message is a one-line reason (and what to try).

    Example:
        >>> str(RenderUnavailable("rendering: no OpenGL backend could render"))
        'rendering: no OpenGL backend could render'
    """


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _reason(suite, e: BaseException) -> str:
    if _is_metaworld(suite):
        return (f"rendering: no OpenGL backend could render (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}: "
                f"{_one_line(e)}); set MUJOCO_GL=osmesa or run on a machine with EGL")
    return f"rendering: {suite.name} could not render a frame ({_one_line(e)})"


def _is_metaworld(suite) -> bool:
    from task_suites.metaworld_suite import MetaWorldSuite  # imports no Meta-World until a suite is built

    return isinstance(suite, MetaWorldSuite)


class _Upscale(gym.Wrapper):
    """Renders the wrapped env's frames ``scale`` times larger (nearest neighbour), framed by a grey border.

    The point-mass view spans the arena wall to wall, so the border shows the walls.
    """

    def __init__(self, env: gym.Env, scale: int):
        super().__init__(env)
        self.scale = int(scale)

    def render(self):
        frame = self.env.render()
        if frame is None:
            return None
        big = np.repeat(np.repeat(np.asarray(frame), self.scale, axis=0), self.scale, axis=1)
        big[:2], big[-2:], big[:, :2], big[:, -2:] = 150, 150, 150, 150
        return big


def _close(env) -> None:
    """Closes an env; errors of freeing an OpenGL context (EGL raises some at release) are suppressed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env.close()
        except Exception:  # a context that fails to free leaves nothing to clean up
            pass


def _frame(env, suite) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 frame of ``env``, or RenderUnavailable."""
    try:
        frame = env.render()
    except Exception as e:  # every backend fails differently (ImportError, RuntimeError, FatalError)
        raise RenderUnavailable(_reason(suite, e)) from e
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3 or frame.size == 0:
        got = getattr(frame, "shape", type(frame).__name__)
        raise RenderUnavailable(f"rendering: {suite.name} returned {got} instead of an (H, W, 3) image")
    return frame.astype(np.uint8, copy=False)


def render_env(suite, task, seed: int = 0) -> gym.Env:
    """A single env of ``task`` that renders ``rgb_array`` frames, checked by rendering one frame.

    Meta-World: ``gym.make("task_suites/MetaWorld-v0", task_id=task.id, suite_seed=suite.seed,
    render_mode="rgb_array")`` (480x480 frames). Point-mass: ``gym.make("task_suites/PointMass-v0",
    mass=..., damping=..., goal=..., render_mode="rgb_array")``, its 64x64 top view (mass blue, goal
    red) shown 3x larger with the walls as a grey border. Both with the suite's episode length as ``TimeLimit``.

    Args:
        suite: a point-mass or Meta-World suite (``task_suites.make``).
        task: one of its tasks.
        seed: seeds the env (the check renders after ``reset(seed=seed)``).

    Returns:
        The env, reset once; reset it again before stepping.

    Raises:
        ValueError: ``task`` is not a task of ``suite``, or the suite is neither kind.
        RenderUnavailable: the env could not be made or could not render a frame.

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("point-mass")
        >>> env = render_env(suite, suite.test_tasks[1], seed=3)
        >>> frame = env.render()
        >>> frame.dtype, frame.shape, bool((frame != 255).any())  # white, but for the walls, the mass and the goal
        (dtype('uint8'), (192, 192, 3), True)
        >>> env.close()
    """
    from task_suites import METAWORLD_ID, POINT_MASS_ID, PointMassSuite

    try:
        suite.check_tasks([task])
    except ValueError:
        raise ValueError(f"task: expected a task of suite {getattr(suite, 'name', suite)!r}, got {task!r}") from None
    if isinstance(suite, PointMassSuite):
        p = task.payload

        def make():
            env = gym.make(POINT_MASS_ID, mass=p["mass"], damping=p["damping"], goal=tuple(p["goal"]),
                           render_mode="rgb_array", max_episode_steps=suite.max_episode_steps,
                           disable_env_checker=True)
            return _Upscale(env, POINT_MASS_SCALE)
    elif _is_metaworld(suite):
        if "MUJOCO_GL" not in os.environ and ctypes.util.find_library("EGL"):
            os.environ["MUJOCO_GL"] = "egl"  # read by Gymnasium's renderer when the first frame is drawn

        def make():
            env = gym.make(METAWORLD_ID, task_id=task.id, suite_seed=suite.seed, render_mode="rgb_array",
                           disable_env_checker=True)
            env.unwrapped.seed(seed)  # a Meta-World env's reset ignores its seed
            return env
    else:
        raise ValueError(f"suite: expected a point-mass or Meta-World suite, got {type(suite).__name__} ({suite.name!r})")
    try:
        env = make()
    except Exception as e:  # e.g. MuJoCo's GL import failing for the backend MUJOCO_GL names
        raise RenderUnavailable(_reason(suite, e)) from e
    try:
        env.reset(seed=seed)
        _frame(env, suite)
    except BaseException:
        _close(env)
        raise
    return env


def _positive_int(name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v!r}")
    return int(v)


def rollout_frames(agent, suite, task, *, adaptation_episodes: int = 1, max_episode_steps: int | None = None,
                   seed: int = 0, every: int = 1) -> list[np.ndarray]:
    """Runs the meta-learning protocol on one task and returns the frames of its evaluation episode.

    ``agent.init()``; ``adaptation_episodes`` episodes of ``agent.adapt_action`` (each step passed to
    ``agent.step`` as a ``metaworld.evaluation.Timestep``, as Meta-World's harness does);
    ``agent.adapt()``; then one evaluation episode of ``agent.eval_action``, rendered. Adaptation
    episodes start from ``reset(seed=seed)``, the evaluation episode from ``reset(seed=seed + 1)``, as in
    :func:`~meta_mbrl.evaluation.protocol_evaluation`.

    Args:
        agent: a one-env ``MetaLearningAgent`` (e.g. :class:`~meta_mbrl.agent.MetaMBRLAgent` with ``num_envs=1``).
        suite: a point-mass or Meta-World suite.
        task: the task, one of the suite's.
        adaptation_episodes: exploration episodes before ``adapt()`` (0: evaluate the prior).
        max_episode_steps: shorter episodes than the suite's (None: the suite's).
        seed: the env's seed.
        every: keep every ``every``-th frame (the first frame, before any action, is always kept).

    Returns:
        ``(H, W, 3)`` uint8 frames of the evaluation episode: the start and then after every ``every``-th step.

    Raises:
        ValueError: a bad argument (named).
        RenderUnavailable: no frame could be rendered.

    Example:
        >>> import numpy as np, task_suites
        >>> from meta_mbrl import MAML, DynamicsMLP
        >>> from meta_mbrl.agent import MetaMBRLAgent
        >>> from meta_mbrl.planning import CEM
        >>> suite = task_suites.make("point-mass")
        >>> planner = CEM(suite.action_low, suite.action_high, horizon=3, population=8, iterations=1, seed=0)
        >>> agent = MetaMBRLAgent(MAML(DynamicsMLP(4, 2, hidden=(8,))), planner, num_envs=1, seed=0)
        >>> frames = rollout_frames(agent, suite, suite.test_tasks[0], max_episode_steps=4, every=2)
        >>> len(frames), frames[0].shape, agent.env_steps["adapt"], agent.env_steps["eval"]
        (3, (192, 192, 3), 4, 4)
    """
    from metaworld.evaluation import Timestep

    if getattr(agent, "num_envs", None) != 1:
        raise ValueError(f"agent: expected an agent for one env (num_envs=1), got num_envs={getattr(agent, 'num_envs', None)!r}")
    adaptation_episodes = _positive_int("adaptation_episodes", adaptation_episodes, minimum=0)
    every = _positive_int("every", every)
    limit = suite.max_episode_steps if max_episode_steps is None else _positive_int("max_episode_steps", max_episode_steps)
    env = render_env(suite, task, seed=seed)
    one = np.ones(1, dtype=bool)
    try:
        agent.init()
        obs, _ = env.reset(seed=seed)
        for ep in range(adaptation_episodes):
            if ep:
                obs, _ = env.reset()
            agent.reset(one)
            for t in range(limit):
                act, aux = agent.adapt_action(obs[None])
                next_obs, rew, term, trunc, _ = env.step(np.asarray(act)[0])
                trunc = bool(trunc) or t + 1 == limit
                agent.step(Timestep(obs[None], act, np.array([rew], dtype=np.float64), np.array([bool(term)]),
                                    np.array([trunc]), aux))
                obs = next_obs
                if term or trunc:
                    break
        agent.adapt()
        obs, _ = env.reset(seed=seed + 1)
        agent.reset(one)
        frames = [_frame(env, suite)]
        for t in range(limit):
            act = agent.eval_action(obs[None])
            obs, _, term, trunc, _ = env.step(np.asarray(act)[0])
            if (t + 1) % every == 0:
                frames.append(_frame(env, suite))
            if term or trunc:
                break
    finally:
        _close(env)
    return frames


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 20, max_side: int = 240) -> Path:
    """Writes frames as a looping GIF, downscaled so that the longer side is at most ``max_side`` (atomic write).

    Args:
        frames: ``(H, W, 3)`` uint8 images, all of one size.
        path: the ``.gif`` file to write (folders are created).
        fps: frames per second (GIF delays are whole hundredths of a second, so at most 50 shows as such).
        max_side: longest side in pixels; larger frames are shrunk (never enlarged).

    Returns:
        ``path``.

    Raises:
        ValueError: no frames, frames of another shape or dtype, a bad ``fps`` or ``max_side``.
        OptionalDependencyError: Pillow is not installed.

    Example:
        >>> import tempfile, numpy as np
        >>> from PIL import Image
        >>> frames = [np.full((480, 320, 3), 40 * i, dtype=np.uint8) for i in range(4)]
        >>> p = save_gif(frames, Path(tempfile.mkdtemp()) / "x.gif", fps=10)
        >>> im = Image.open(p)
        >>> im.size, im.n_frames, im.info["duration"]
        ((160, 240), 4, 100)
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise OptionalDependencyError(f"save_gif: Pillow is not installed ({e}); {INSTALL_HINT}") from None
    frames = list(frames)
    if not frames:
        raise ValueError("frames: expected at least one (H, W, 3) uint8 image, got none")
    shape = np.asarray(frames[0]).shape
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3 or f.shape != shape or 0 in f.shape:
            raise ValueError(f"frames: expected (H, W, 3) uint8 images of one shape {shape}, frame {i} is {f.dtype} {f.shape}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 0 < fps <= 100:
        raise ValueError(f"fps: expected a number in (0, 100], got {fps!r}")
    max_side = _positive_int("max_side", max_side, minimum=8)
    h, w = shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    images = []
    for f in frames:
        im = Image.fromarray(np.asarray(f))
        images.append(im.resize(size, Image.Resampling.LANCZOS) if size != (w, h) else im)
    duration = max(10, int(round(100 / fps)) * 10)  # milliseconds, a whole number of hundredths
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return Path(path)


def record_episodes(agent_factory: Callable[[], object], suite, tasks: Sequence, out_dir: str | os.PathLike, *,
                    adaptation_episodes: int = 1, max_episode_steps: int | None = None, seed: int = 0,
                    fps: float = 20) -> list[Path]:
    """One GIF per task of a fresh agent's evaluation episode after adaptation (see :func:`rollout_frames`).

    Args:
        agent_factory: returns a fresh one-env agent (called once per task).
        suite: a point-mass or Meta-World suite.
        tasks: tasks of the suite.
        out_dir: folder of the GIFs, each named after its task id with ``/`` replaced by ``_``
            (``ml10_test_door-close-v3_00.gif``).
        adaptation_episodes / max_episode_steps / seed: as in :func:`rollout_frames`.
        fps: frames per second of the GIFs.

    Returns:
        The GIF paths, in the order of ``tasks``.

    Raises:
        RenderUnavailable: no frame could be rendered (GIFs of earlier tasks stay written).

    Example:
        >>> import tempfile, numpy as np, task_suites
        >>> from meta_mbrl import MAML, DynamicsMLP
        >>> from meta_mbrl.agent import MetaMBRLAgent
        >>> from meta_mbrl.planning import CEM
        >>> suite = task_suites.make("point-mass")
        >>> learner = MAML(DynamicsMLP(4, 2, hidden=(8,)))
        >>> def fresh_agent():
        ...     planner = CEM(suite.action_low, suite.action_high, horizon=3, population=8, iterations=1, seed=0)
        ...     return MetaMBRLAgent(learner, planner, num_envs=1, seed=0)
        >>> paths = record_episodes(fresh_agent, suite, suite.test_tasks[:2], tempfile.mkdtemp(), max_episode_steps=3)
        >>> [p.name for p in paths]
        ['point-mass_test_00.gif', 'point-mass_test_01.gif']
    """
    tasks = suite.check_tasks(list(tasks))
    if not tasks:
        raise ValueError("tasks: expected at least one task, got none")
    out = Path(out_dir)
    paths = []
    for task in tasks:
        frames = rollout_frames(agent_factory(), suite, task, adaptation_episodes=adaptation_episodes,
                                max_episode_steps=max_episode_steps, seed=seed)
        paths.append(save_gif(frames, out / f"{task.id.replace('/', '_')}.gif", fps=fps))
    return paths
