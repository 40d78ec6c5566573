"""``hotline serve`` (``make serve``): prepare what the service needs, say how to call it, then start it.

1. The intent champion: trained with the quick recipe (``training/configs/intent_quick.yaml``, a few minutes on 2
   cores) when the registry has none; the full recipe is ``hotline train intent``.
2. The recogniser: the ``asr`` champion, else the pretrained whisper-base, assembled from its pinned packages
   (``models/asr/bootstrap.py``) and loaded once here so a broken install fails now, not at the first call.
3. The database: schema upgraded, and a developer key kept in ``var/dev-key`` (mode 0600; a new one only when the
   file is missing or its key unknown or revoked). The key has the ``platform`` role (route calls, create and read
   its tickets); ``var/dev-key.supervisor`` holds a ``supervisor`` key (read and update every ticket, unmasked).
4. What is served: URL, key, an example ``curl``, and the optional models (dialect, emotion) present or absent.
5. ``bentoml serve serving.service:Hotline`` replaces this process (``HF_HUB_OFFLINE=1``). Champions are read
   when the service starts: restart it after promoting a new one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Hotline"
QUICK_CONFIG = "training/configs/intent_quick.yaml"
FULL_TRAIN = "hotline train intent"  # the full recipe (training/configs/intent.yaml)
RECIPE_TAG = "hotline.recipe"  # registry version tag: which recipe `hotline serve` trained
DEV_KEYS = {"platform": REPO / "var" / "dev-key", "supervisor": REPO / "var" / "dev-key.supervisor"}
EXAMPLE_TEXT = "我的快递一个星期了还没到，我要投诉"
STEPS = 5


class _Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, n: int, what: str) -> None:
        print(f"serve [{n}/{STEPS}] {what}", flush=True)

    def say(self, what: str) -> None:
        print(f"serve       {what} ({time.monotonic() - self.t0:.0f}s)", flush=True)


def ensure_intent(no_train: bool, p: _Progress) -> bool:
    """An intent champion exists afterwards (trained with the quick recipe when missing); False if not."""
    from models.champions import champion_version, client

    mv = champion_version("intent")
    if mv is None:
        if no_train:
            print(f"serve: no intent champion and --no-train: train one (`{FULL_TRAIN}`, or the quick "
                  f"`hotline train intent --config {QUICK_CONFIG}`)", file=sys.stderr)
            return False
        p.say(f"no intent champion: training the quick recipe ({QUICK_CONFIG}, a few minutes on 2 cores)")
        from training.intent import main as train_intent

        t = time.monotonic()
        rc = train_intent(["--config", str(REPO / QUICK_CONFIG)])  # its progress bar shows the steps
        mv = champion_version("intent")
        if rc or mv is None:
            print(f"serve: the quick intent recipe failed (exit {rc}); see the output above", file=sys.stderr)
            return False
        client().set_model_version_tag("intent", mv.version, RECIPE_TAG, "intent_quick")
        p.say(f"quick intent model trained in {time.monotonic() - t:.0f}s")
        mv = champion_version("intent")
    metrics = _metrics(mv)
    score = f", val_score {metrics['val_score']:.3f}" if "val_score" in metrics else ""
    quick = (mv.tags or {}).get(RECIPE_TAG) == "intent_quick"
    p.say(f"intent: champion version {mv.version} (run {mv.run_id}{score})"
          + (" from the quick recipe" if quick else ""))
    if quick:
        p.say(f"intent: for the full model run `{FULL_TRAIN}` (about 12 minutes on 2 cores); it becomes champion "
              "when it beats this one on validation; then restart `make serve`")
    return True


def _metrics(mv) -> dict:
    from models.champions import version_info

    return version_info(mv).get("metrics") or {}


def ensure_recogniser(p: _Progress) -> None:
    """The asr champion is loaded by the service; without one, bootstrap whisper-base and load it once."""
    from models.champions import champion_version

    mv = champion_version("asr")
    if mv is not None:
        p.say(f"asr: champion version {mv.version} (run {mv.run_id}); the service loads it at start")
        return
    from models.asr.bootstrap import ct2_model_dir
    from models.asr.recognizer import Recognizer

    t = time.monotonic()
    folder = ct2_model_dir()  # assembles and hash-checks once; later only compares a stamp
    p.say(f"asr: no champion; pretrained whisper-base at {folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder}")
    rec = Recognizer.load(None)
    rec.warm_up()  # a first decode (past the no-speech gate) and VAD check: engine, tokenizer and VAD work
    p.say(f"asr: whisper-base loaded and decoded a test second ({rec.engine} {rec.compute_type} on {rec.device}) "
          f"in {time.monotonic() - t:.0f}s; fine-tune it with `hotline train asr`")


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_dev_keys(database_url: str | None = None, files: dict[str, Path] | None = None) -> dict[str, tuple[str, bool]]:
    """Upgrade the database, then make sure each developer key file holds a live key of its role.
    Returns role -> (secret, created now)."""
    from serving.store import Store

    files = DEV_KEYS if files is None else files
    out: dict[str, tuple[str, bool]] = {}
    with Store(database_url) as store:
        store.upgrade()
        for role, path in files.items():
            secret = _read_secret(path)
            info = store.verify_key(secret) if secret else None
            if info is not None and info.role == role:
                os.chmod(path, 0o600)
                out[role] = (secret, False)
                continue
            info, secret = store.create_key(role, f"developer ({path.relative_to(REPO) if path.is_relative_to(REPO) else path})")
            store.audit(None, "keys.create", detail=f"{info.id} {info.role} {info.name} (hotline serve)")
            _write_secret(path, secret)
            out[role] = (secret, True)
    return out


def optional_models(p: _Progress) -> None:
    from models.champions import OPTIONAL_HINTS, champion_version

    for name in ("dialect", "emotion"):
        mv = champion_version(name)
        if mv is None:
            p.say(f"{name}: absent (responses say so); {OPTIONAL_HINTS[name]}")
        else:
            p.say(f"{name}: champion version {mv.version} (run {mv.run_id})")


def banner(host: str, port: int, keys: dict[str, tuple[str, bool]]) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    platform_file = DEV_KEYS["platform"].relative_to(REPO)
    lines = [
        "",
        f"hotline will listen on {url}  (ready when `curl {url}/readyz` answers 200)",
        f"  platform key   ({platform_file}): {keys['platform'][0]}",
    ]
    if "supervisor" in keys:
        lines.append(f"  supervisor key ({DEV_KEYS['supervisor'].relative_to(REPO)}): {keys['supervisor'][0]}")
    lines += [
        "  more keys: hotline keys create --role platform|agent|supervisor|admin",
        "  try:",
        f"    curl -s -H \"Authorization: Bearer $(cat {platform_file})\" -F text={EXAMPLE_TEXT} {url}/route",
        f"  API: {url}/docs (OpenAPI); champions are read at start: restart after promoting a new one",
        "",
    ]
    return "\n".join(lines)


def serve_main(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    p = _Progress()
    p.step(1, "intent model")
    if not ensure_intent(args.no_train, p):
        return 1
    p.step(2, "speech recogniser")
    ensure_recogniser(p)
    p.step(3, "database and developer keys")
    keys = ensure_dev_keys()
    from sqlalchemy.engine import make_url

    from serving.store import resolve_url

    db = make_url(resolve_url(None)).render_as_string(hide_password=True)
    p.say(f"database {db} upgraded; keys "
          + ", ".join(f"{r} {'created' if new else 'kept'}" for r, (_, new) in keys.items()))
    p.step(4, "optional models")
    optional_models(p)
    p.step(5, "starting the service (bentoml serve)")
    print(banner(args.host, args.port, keys), flush=True)
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", args.host, "--port", str(args.port)]
    os.chdir(REPO)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached
