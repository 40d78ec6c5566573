"""Model registry: every trained model becomes a version; only a better one becomes ``@champion``.

``hotline predict``, ``evaluate`` and ``bundle`` load ``models:/<name>@champion``. A new version takes the
alias only when its metric beats the champion's value of the same metric (read from the champion
version's run); ties keep the old champion. The decision is printed and stored as ``promotion.*`` tags
on the new run and as tags on the new model version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from models.champions import CHAMPION, champion_uri, champion_version, tracking_uri  # noqa: F401 - the read side

TAG_PREFIX = "promotion."  # run tags that record the decision


class NoChampionError(LookupError):
    """The registry has no champion for a model yet."""


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str  # registered model name, e.g. "intent"
    version: str  # the version just registered
    promoted: bool  # True when the new version now holds @champion
    reason: str  # why, in a sentence
    metric: str  # metric compared, e.g. "test_macro_f1"
    value: float  # the new version's value of it
    previous_champion_version: str | None  # who held @champion before (None if nobody)
    previous_champion_value: float | None  # its value of the metric (None if unknown)
    higher_is_better: bool  # direction of the comparison

    def as_tags(self) -> dict[str, str]:
        """The decision as string tags (``promotion.*``)."""
        return {
            f"{TAG_PREFIX}promoted": str(self.promoted).lower(),
            f"{TAG_PREFIX}reason": self.reason,
            f"{TAG_PREFIX}model_name": self.model_name,
            f"{TAG_PREFIX}version": self.version,
            f"{TAG_PREFIX}metric": self.metric,
            f"{TAG_PREFIX}value": repr(self.value),
            f"{TAG_PREFIX}previous_champion_version": self.previous_champion_version or "none",
            f"{TAG_PREFIX}previous_champion_value": "none" if self.previous_champion_value is None
            else repr(self.previous_champion_value),
            f"{TAG_PREFIX}higher_is_better": str(self.higher_is_better).lower(),
        }


def should_promote(new: float, current: float | None, higher_is_better: bool = True) -> bool:
    """True when ``new`` strictly beats ``current`` (or there is no current value). NaN never wins."""
    if new is None or math.isnan(new):
        return False
    if current is None or math.isnan(current):
        return True
    return new > current if higher_is_better else new < current


def _client():
    from models.champions import client

    return client()


def _run_metric(client, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    try:
        value = client.get_run(run_id).data.metrics.get(metric)
    except Exception:
        return None
    return None if value is None else float(value)


def _model_source(client, run_id: str, artifact_path: str) -> str:
    """``models:/<model_id>`` of the model logged as ``artifact_path`` in the run (MLflow 3 logged models),
    else ``runs:/<run_id>/<artifact_path>`` (a model saved as plain run artifacts)."""
    try:
        exp_id = client.get_run(run_id).info.experiment_id
        found = client.search_logged_models(
            experiment_ids=[exp_id], filter_string=f"source_run_id = '{run_id}' AND name = '{artifact_path}'"
        )
        if len(found):
            return f"models:/{found[0].model_id}"
    except Exception:  # older server, or no such run (register_model then reports it)
        pass
    return f"runs:/{run_id}/{artifact_path}"


def register_and_maybe_promote(
    run_id: str,
    artifact_path: str,
    model_name: str,
    metric: str,
    value: float,
    higher_is_better: bool = True,
    guard: tuple[str, str] | None = None,
) -> PromotionDecision:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``model_name``; give it @champion
    if ``value`` of ``metric`` beats the champion's. ``guard = (a, b)``: a version whose run has metric a > metric b
    is never promoted, and a champion that fails it is replaced by the next version that passes (e.g. ASR:
    ``("real_cer", "real_zero_shot_cer")``, not worse than zero-shot on real speech). Records and prints the decision."""
    import mlflow

    client = _client()
    value = float(value)
    previous = champion_version(model_name)
    prev_version = str(previous.version) if previous is not None else None
    prev_value = _run_metric(client, previous.run_id, metric) if previous is not None else None

    source = _model_source(client, run_id, artifact_path)
    try:
        mv = mlflow.register_model(source, model_name)
    except Exception as e:
        raise RuntimeError(
            f"could not register {source} as '{model_name}': {e}. Was the model logged under "
            f"artifact path '{artifact_path}' in run {run_id}?"
        ) from e
    version = str(mv.version)

    better = "higher" if higher_is_better else "lower"
    passes = _guard(client, run_id, guard)
    prev_passes = _guard(client, previous.run_id, guard) if previous is not None else True
    if not passes:
        promoted = False
        reason = (f"version {version} fails the guard {guard[0]} <= {guard[1]}: not promoted"
                  + (f"; {CHAMPION} stays version {prev_version}" if prev_version else ""))
    elif not prev_passes:
        promoted = True
        reason = (f"{CHAMPION} version {prev_version} fails the guard {guard[0]} <= {guard[1]} and version {version} "
                  f"passes it ({metric}={value:.4g}): version {version} promoted")
    elif previous is None:
        promoted, reason = True, f"no {CHAMPION} for '{model_name}' yet: version {version} becomes {CHAMPION}"
    elif prev_value is None:
        promoted = not math.isnan(value)
        reason = (f"{CHAMPION} version {prev_version} has no '{metric}' recorded in its run: "
                  f"version {version} ({metric}={value:.4g}) replaces it" if promoted
                  else f"version {version} has {metric}=nan: not promoted")
    elif should_promote(value, prev_value, higher_is_better):
        promoted = True
        reason = (f"{metric}={value:.4g} beats {CHAMPION} version {prev_version} ({prev_value:.4g}, "
                  f"{better} is better): version {version} promoted")
    else:
        promoted = False
        how = "ties" if value == prev_value else "does not beat"
        reason = (f"{metric}={value:.4g} {how} {CHAMPION} version {prev_version} ({prev_value:.4g}, "
                  f"{better} is better): {CHAMPION} stays version {prev_version}")
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)

    decision = PromotionDecision(
        model_name=model_name, version=version, promoted=promoted, reason=reason, metric=metric, value=value,
        previous_champion_version=prev_version, previous_champion_value=prev_value,
        higher_is_better=higher_is_better,
    )
    for k, v in decision.as_tags().items():
        client.set_tag(run_id, k, v)
    client.set_model_version_tag(model_name, version, metric, repr(value))
    client.set_model_version_tag(model_name, version, "promoted", str(promoted).lower())
    print(f"[registry] {model_name} v{version}: {'PROMOTED' if promoted else 'not promoted'}: {reason}")
    return decision


def _guard(client, run_id: str | None, guard: tuple[str, str] | None) -> bool:
    """Whether the run's metrics satisfy ``guard = (a, b)``: a <= b (True when there is no guard or a metric is
    missing, e.g. a check that was skipped)."""
    if guard is None:
        return True
    a, b = (_run_metric(client, run_id, m) for m in guard)
    return a is None or b is None or a <= b


def load_champion(model_name: str, flavor: str = "pyfunc") -> Any:
    """Load ``models:/<model_name>@champion`` with ``mlflow.<flavor>.load_model`` ("pyfunc", "pytorch", ...).

    Raises :class:`NoChampionError` with what to run when there is none.
    """
    import importlib

    if champion_version(model_name) is None:
        raise NoChampionError(
            f"no {CHAMPION} for {model_name}: run `hotline train {model_name}` first "
            f"(tracking URI: {tracking_uri()})"
        )
    module = importlib.import_module(f"mlflow.{flavor}")
    return module.load_model(champion_uri(model_name))
