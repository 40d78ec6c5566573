"""Model registry: every trained model becomes a version; only a better one becomes ``@champion``.

``hotline predict``, ``evaluate`` and ``bundle`` load ``models:/<name>@champion``. A new version takes the
alias only when its metric beats the champion's value of the same metric (read from the champion
version's run); ties keep the old champion. The decision is printed and stored as ``promotion.*`` tags
on the new run and as tags on the new model version.

Promotion fails closed: a compared value that is missing or NaN, a guard metric that is missing (a check that
was skipped, whose data was absent, or that raised) and a ``blocked`` reason from the caller (e.g. an exception
while computing a metric) each keep the new version out of ``@champion``, with the reason in
``promotion.reason`` and a short code in ``promotion.blocked``. A champion that lacks the compared metric or
fails the guard is replaced only by a version that passes the guard, and the reason says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

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
    blocked: str | None = None  # why promotion was refused outright (a code, e.g. "guard_metric_missing"), else None

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
            f"{TAG_PREFIX}blocked": self.blocked or "false",
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
    """The run's value of ``metric``; None when it is not recorded (a failed read raises: it must not pass as
    "no metric")."""
    if not run_id:
        return None
    value = client.get_run(run_id).data.metrics.get(metric)
    return None if value is None else float(value)


def _registered_value(client, mv, metric: str) -> float | None:
    """The value of ``metric`` a version was registered with (its model-version tag), else its run's last logged
    value. The tag comes first: a run logs a metric name several times (e.g. ``val_score`` at every evaluation of
    training, then once for the final model), and the run's latest value need not be the registered one."""
    raw = (getattr(mv, "tags", None) or {}).get(metric)
    if raw is not None:
        try:
            return float(raw)
        except ValueError:
            pass
    return _run_metric(client, mv.run_id, metric)


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


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


def promote_on(run_id: str, artifact_path: str, model_name: str, metric: str,
               metrics: Mapping[str, float]) -> PromotionDecision:
    """:func:`register_and_maybe_promote` on ``metrics[metric]`` (a run's validation metrics); a ``metric`` the run
    did not compute is a ConfigError naming ``evaluation.promote_metric`` and the metrics there are."""
    from training.config import ConfigError

    if metric not in metrics:
        raise ConfigError(f"evaluation.promote_metric '{metric}' is not one of {sorted(metrics)}")
    return register_and_maybe_promote(run_id, artifact_path, model_name, metric, metrics[metric])


def register_and_maybe_promote(
    run_id: str,
    artifact_path: str,
    model_name: str,
    metric: str,
    value: float | None,
    higher_is_better: bool = True,
    guard: tuple[str, str] | None = None,
    blocked: str | None = None,
) -> PromotionDecision:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``model_name``; give it @champion
    if ``value`` of ``metric`` beats the champion's. Records and prints the decision.

    ``guard = (a, b)``: a version is promoted only when its run records both metrics and a <= b (e.g. ASR:
    ``("real_cer_numnorm", "real_zero_shot_cer_numnorm")``, not worse than zero-shot on real speech); a missing
    guard metric blocks. A champion that fails the guard (or lacks its metrics) is replaced by the next version
    that passes it. ``blocked``: the caller's reason to refuse promotion (e.g. a metric raised); the version is
    still registered. A ``value`` that is None or NaN blocks too."""
    import mlflow

    client = _client()
    value = None if value is None else float(value)
    previous = champion_version(model_name)
    prev_version = str(previous.version) if previous is not None else None
    prev_value = _registered_value(client, previous, metric) if previous is not None else None

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
    stays = f"; {CHAMPION} stays version {prev_version}" if prev_version else ""
    passes, why = _guard(client, run_id, guard)
    prev_passes, prev_why = _guard(client, previous.run_id, guard) if previous is not None else (True, "")
    code: str | None = None
    if blocked:
        promoted, code = False, "caller"
        reason = f"version {version}: {blocked}: not promoted" + stays
    elif _missing(value):
        promoted, code = False, "metric_missing"
        reason = f"version {version} has no value of {metric} ({value}): not promoted" + stays
    elif not passes:
        promoted = False
        code = "guard_metric_missing" if "missing" in why else "guard_failed"
        reason = f"version {version} {why}: not promoted" + stays
    elif not prev_passes:
        promoted = True
        reason = (f"{CHAMPION} version {prev_version} {prev_why}, and version {version} passes it "
                  f"({metric}={value:.4g}): version {version} promoted")
    elif previous is None:
        promoted, reason = True, f"no {CHAMPION} for '{model_name}' yet: version {version} becomes {CHAMPION}"
    elif prev_value is None or math.isnan(prev_value):
        promoted = True
        reason = (f"{CHAMPION} version {prev_version} has no '{metric}' recorded in its run, so the two cannot be "
                  f"compared: version {version} ({metric}={value:.4g}"
                  + (", passes the guard" if guard else "") + ") replaces it")
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
        model_name=model_name, version=version, promoted=promoted, reason=reason, metric=metric,
        value=math.nan if value is None else value, previous_champion_version=prev_version,
        previous_champion_value=prev_value, higher_is_better=higher_is_better, blocked=code,
    )
    for k, v in decision.as_tags().items():
        client.set_tag(run_id, k, v)
    client.set_model_version_tag(model_name, version, metric, repr(decision.value))
    client.set_model_version_tag(model_name, version, "promoted", str(promoted).lower())
    print(f"[registry] {model_name} v{version}: {'PROMOTED' if promoted else 'not promoted'}: {reason}")
    return decision


def _guard(client, run_id: str | None, guard: tuple[str, str] | None) -> tuple[bool, str]:
    """Whether the run's metrics satisfy ``guard = (a, b)``: a <= b, and why not. No guard passes; a missing or
    NaN guard metric fails (fail closed: a skipped or broken check is not a passed one)."""
    if guard is None:
        return True, ""
    a, b = (_run_metric(client, run_id, m) for m in guard)
    absent = [m for m, v in zip(guard, (a, b)) if _missing(v)]
    if absent:
        return False, (f"has no {' or '.join(absent)} recorded, so the guard {guard[0]} <= {guard[1]} cannot be "
                       "checked (guard metric missing)")
    if a > b:
        return False, f"fails the guard {guard[0]} <= {guard[1]} ({a:.4g} > {b:.4g})"
    return True, ""


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
