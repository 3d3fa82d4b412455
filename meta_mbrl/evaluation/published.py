"""Published returns this project compares itself with on the parametric-dynamics MuJoCo suites.

**CaDM** (Lee, Seo, Lee, Lee, Shin, ICML 2020, arXiv:2005.06800), Table 1, the *moderate* test column: mean
return of 1000-step episodes on test dynamics outside the training range, after 20 iterations of 10 rollouts
(200k env steps on the training range; CEM 200 candidates x horizon 30; the context is the episode's own last
10 transitions). The numbers are quoted from a third-party reading of the paper's full text (a verbatim
transcription of Table 1's moderate column, with the ± of four entries); the PDF itself was not read here.
Only the moderate column and these four methods were available; CaDM's GrBAL and ReBAL rows and its extreme
column were not.

**GrBAL** (Nagabandi, Clavera et al., ICLR 2019) publishes learning curves only (no table), so there is no
number to set beside ``grbal:crippled-ant``.

Which of our test tasks count as CaDM's *moderate* regime: CaDM's test ranges are pairs of intervals around
the training range ([0.4, 0.5] and [1.5, 1.6] for HalfCheetah's and SlimHumanoid's scales, [0.4, 0.6] for
Ant's mass), the outer ones ([0.2, 0.3], [1.7, 1.8], Ant's [0.2, 0.4]) being the extreme ones; a crippled
HalfCheetah with one crippled joint is moderate. :func:`cadm_regime` applies that reading to a task.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["CADM_TABLE1_MODERATE", "CADM_SOURCE", "cadm_env_of", "cadm_regime", "published_table"]

CADM_SOURCE = ("CaDM (Lee et al. 2020) Table 1, test-moderate column, 200k env steps, CEM 200 x H30; quoted from a "
               "third-party transcription of the paper's text")

# (CaDM environment, method) -> (mean return, std or None)
CADM_TABLE1_MODERATE: dict[tuple[str, str], tuple[float, float | None]] = {
    ("HalfCheetah", "Vanilla DM"): (1026.7, 164.7),
    ("HalfCheetah", "Vanilla DM + CaDM"): (1556.1, None),
    ("HalfCheetah", "PE-TS"): (2019.6, None),
    ("HalfCheetah", "PE-TS + CaDM"): (7087.2, 1495.6),
    ("Ant", "Vanilla DM"): (520.0, 97.6),
    ("Ant", "Vanilla DM + CaDM"): (1315.7, None),
    ("Ant", "PE-TS"): (1075.1, None),
    ("Ant", "PE-TS + CaDM"): (2121.0, 60.4),
    ("CrippledHalfCheetah", "Vanilla DM"): (870.0, None),
    ("CrippledHalfCheetah", "Vanilla DM + CaDM"): (1375.3, None),
    ("CrippledHalfCheetah", "PE-TS"): (1916.5, None),
    ("CrippledHalfCheetah", "PE-TS + CaDM"): (2618.7, None),
    ("SlimHumanoid", "Vanilla DM"): (1004.4, None),
    ("SlimHumanoid", "Vanilla DM + CaDM"): (1228.9, None),
    ("SlimHumanoid", "PE-TS"): (758.6, None),
    ("SlimHumanoid", "PE-TS + CaDM"): (903.7, None),
}

_ENV_OF = {
    "cadm:halfcheetah-mass": "HalfCheetah",  # CaDM scales mass and damping together; ours one at a time
    "cadm:halfcheetah-damping": "HalfCheetah",
    "cadm:ant-mass": "Ant",
    "cadm:crippled-halfcheetah": "CrippledHalfCheetah",
    "cadm:slim-humanoid": "SlimHumanoid",
}


def cadm_env_of(suite_name: str) -> str | None:
    """CaDM's environment the suite reproduces (``"HalfCheetah"``, ...), or None where CaDM published none
    (``cadm:ant-damping`` is ours, ``grbal:crippled-ant`` is GrBAL's)."""
    return _ENV_OF.get(suite_name)


def cadm_regime(payload: dict) -> str:
    """``"moderate"`` or ``"extreme"``: CaDM's test regime of a task of the MuJoCo suites, from its payload.

    Example:
        >>> cadm_regime({"mass": 0.5, "damping": 1.0, "crippled": ()}), cadm_regime({"mass": 1.8, "damping": 1.0})
        ('moderate', 'extreme')
        >>> cadm_regime({"mass": 1.0, "damping": 1.0, "crippled": (4,)})
        'moderate'
    """
    if not isinstance(payload, dict) or "mass" not in payload or "damping" not in payload:
        raise ValueError(f"payload: expected a MuJoCo suite task's payload with 'mass' and 'damping', got {payload!r}")
    factors = (float(payload["mass"]), float(payload["damping"]))
    return "moderate" if all(0.4 - 1e-9 <= f <= 1.6 + 1e-9 for f in factors) else "extreme"


def published_table(suite_name: str) -> pd.DataFrame:
    """CaDM's published moderate-regime returns for the suite's environment: columns ``method``,
    ``return_moderate``, ``return_std``, ``env_steps``, ``source`` (empty where CaDM published none)."""
    env = cadm_env_of(suite_name)
    rows = [dict(method=f"{m} (CaDM paper)", return_moderate=v, return_std=s, env_steps=200_000, source=CADM_SOURCE)
            for (e, m), (v, s) in CADM_TABLE1_MODERATE.items() if e == env]
    return pd.DataFrame(rows, columns=["method", "return_moderate", "return_std", "env_steps", "source"])
