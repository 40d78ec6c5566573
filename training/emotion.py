"""``hotline train emotion``: train, calibrate, evaluate, log and register the speech emotion model.

    hotline train emotion --config training/configs/emotion.yaml [key=value ...]
    hotline train emotion data=emotion_folders data.emotion_folders=/path/to/CASIA
    hotline train emotion --config training/configs/emotion_hf.yaml model.pretrained=/path/to/wav2vec2

Steps of :func:`main`:
 1. parse arguments and compose the config
 2. seed everything, cap torch threads
 3. data: utterances of ``<data.corpus_dir>/{train,validation,test}.jsonl`` or of an emotion-folder corpus
    (``data.emotion_folders``: CASIA/ESD, passed through the telephone channel), train optionally subsampled
    class-balanced; speakers are disjoint between splits
 4. features (whisper backend): pooled frozen-encoder states and prosody, cached per split under
    ``data.cache_dir`` keyed by the split's content and the feature settings
 5. ablation (whisper backend): encoder-only, encoder+prosody and prosody-only heads on the same features
 6. fit the configured model (class-weighted loss, early stopping on validation macro-F1)
 7. calibrate: temperature scaling on validation logits; ECE before/after
 8. evaluate on test: macro-F1, accuracy, per-class F1 and recall, confusion matrix, ECE, arousal
 9. text signal and fusion: lexicon / n-gram / audio / fused on validation and test; the Weibo texts
10. calls: emotion trajectories and alerts of test calls (``evaluation.max_calls``)
11. save the model directory, log it as the run's ``model`` artifact, register as ``emotion``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from models.calibration import DEFAULT_ECE_BINS, expected_calibration_error, fit_temperature, negative_log_likelihood, softmax
from models.taxonomy import EMOTIONS
from training.config import CONFIG_ROOT, ConfigDict, ConfigError, load_config, to_dataclass

DEFAULT_CONFIG = CONFIG_ROOT / "emotion.yaml"
SPLITS = ("train", "validation", "test")
MODEL_ARTIFACT = "model"
FEATURE_VERSION = 1  # bump when feature computation changes: old caches are then ignored
CHUNK = 256  # utterances per cached feature file (an interrupted extraction resumes from the last chunk)
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # speaker split of a folder corpus without its own splits
ABLATION = {"encoder_only": (True, False), "encoder_prosody": (True, True), "prosody_only": (False, True)}


# -- config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmotionDataConfig:
    corpus_dir: str | None = "data/corpus/default"  # folder with {train,validation,test}.jsonl (emotion, audio)
    emotion_folders: str | None = None  # a CASIA/ESD-style folder (one folder per label): wins over corpus_dir
    telephone: bool = True  # pass emotion-folder audio through the telephone channel (corpus audio already is)
    max_train: int | None = None  # class-balanced subsample of the training split; null = all
    max_validation: int | None = None  # random subsample of validation; null = all
    max_test: int | None = None  # random subsample of test; null = all
    cache_dir: str = "data/cache/emotion"  # feature cache (relative paths: to the repository)
    batch_size: int = 64  # head training batch size
    seed: int = 0  # subsampling and folder-corpus split


@dataclass(frozen=True)
class CalibrationConfig:
    method: str = "lbfgs"  # lbfgs | grid
    ece_bins: int = DEFAULT_ECE_BINS


@dataclass(frozen=True)
class EvaluationConfig:
    ablation: bool = True  # also train encoder-only / encoder+prosody / prosody-only heads and log their metrics
    text_ngram: bool = True  # train the n-gram text signal on training transcripts (else the lexicon only)
    weibo_path: str | None = "../shared/realtext/weibo_emotion_test.txt"  # real texts for the text signal; null = skip
    max_calls: int = 10  # test calls scored for trajectories and alerts (0 = none)
    alert_threshold: float = 0.6  # AlertOptions.threshold for the call evaluation
    alert_min_span_s: float = 8.0  # AlertOptions.min_span_s
    angry_recall_target: float | None = 0.95  # escalation operating point on the fused scores (null: none)
    promote_metric: str = "val_macro_f1"  # registry: validation metric compared with the champion's


REPO = Path(__file__).resolve().parents[1]


def _repo_path(p: str | None) -> Path | None:
    if p is None:
        return None
    path = Path(p).expanduser()
    return path if path.is_absolute() else REPO / path


# -- data ------------------------------------------------------------------------------------------
def read_corpus(corpus_dir: Path) -> dict[str, list[dict]]:
    """Utterance records with ``audio_path`` and ``emotion`` of each split manifest."""
    from data.manifest import format_errors, read_manifest

    out = {}
    for split in SPLITS:
        path = corpus_dir / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: data.corpus_dir must hold train.jsonl, validation.jsonl and test.jsonl "
                f"(build one with `hotline data synth --out {corpus_dir}`), or set data.emotion_folders=/path/to/CASIA"
            )
        m = read_manifest(path)
        if m.errors:
            print(f"[emotion] {path}: skipped {len(m.errors)} bad lines\n{format_errors(m.errors, 10)}", file=sys.stderr)
        out[split] = [r for r in m.records if r.get("audio_path") and r.get("emotion")]
        if not out[split]:
            raise ValueError(f"{path} has no records with both 'audio' and 'emotion': nothing to train or score on")
    return out


def split_by_speaker(records: Sequence[dict], seed: int) -> dict[str, list[dict]]:
    """Records' own ``split`` when every record has one, else a speaker-disjoint split (SPLIT_FRACTIONS)."""
    if records and all(r.get("split") in SPLITS for r in records):
        out = {s: [r for r in records if r["split"] == s] for s in SPLITS}
        if all(out.values()):
            return out
    speakers = sorted({r.get("speaker") or r["id"] for r in records})
    random.Random(seed).shuffle(speakers)
    n = len(speakers)
    if n < 3:
        raise ValueError(f"the folder corpus has {n} speakers; a speaker-disjoint train/validation/test split needs at least 3")
    n_val = max(1, round(n * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(n * SPLIT_FRACTIONS[2]))
    part = {s: "validation" for s in speakers[:n_val]}
    part.update({s: "test" for s in speakers[n_val : n_val + n_test]})
    out = {s: [] for s in SPLITS}
    for r in records:
        out[part.get(r.get("speaker") or r["id"], "train")].append(r)
    return out


def read_folders(root: Path, seed: int) -> dict[str, list[dict]]:
    from data.adapters import emotion_folders

    res = emotion_folders(root)
    if not res.records:
        raise ValueError(f"data.emotion_folders={root}: no usable audio ({'; '.join(res.skipped[:3])})")
    for s in res.skipped[:5]:
        print(f"[emotion] skipped: {s}", file=sys.stderr)
    return split_by_speaker(res.records, seed)


def balanced_subsample(records: Sequence[dict], n: int | None, seed: int) -> list[dict]:
    """At most ``n`` records, as even over emotions as the data allow (all when ``n`` is None)."""
    if n is None or n >= len(records):
        return list(records)
    rng = random.Random(seed)
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["emotion"], []).append(r)
    for v in by.values():
        rng.shuffle(v)
    out: list[dict] = []
    classes = sorted(by)
    while len(out) < n:
        progressed = False
        for c in classes:
            if by[c] and len(out) < n:
                out.append(by[c].pop())
                progressed = True
        if not progressed:
            break
    return sorted(out, key=lambda r: r["id"])


def load_data(cfg: EmotionDataConfig) -> dict[str, list[dict]]:
    if cfg.emotion_folders:
        splits = read_folders(_repo_path(cfg.emotion_folders), cfg.seed)
    elif cfg.corpus_dir:
        splits = read_corpus(_repo_path(cfg.corpus_dir))
    else:
        raise ConfigError("set data.corpus_dir (a hotline corpus) or data.emotion_folders (a CASIA/ESD-style folder)")
    rng = random.Random(cfg.seed + 1)
    splits["train"] = balanced_subsample(splits["train"], cfg.max_train, cfg.seed)
    for split, n in (("validation", cfg.max_validation), ("test", cfg.max_test)):
        if n is not None and n < len(splits[split]):
            splits[split] = sorted(rng.sample(splits[split], n), key=lambda r: r["id"])
    for split, recs in splits.items():
        if not recs:
            raise ValueError(f"the {split} split is empty; check the corpus (or the folder corpus' speakers)")
    return splits


def load_utterance(rec: Mapping, telephone: bool) -> np.ndarray:
    """16 kHz mono audio of a record; through the telephone channel when asked (seeded by the record id)."""
    from data.audio import PHONE_SAMPLE_RATE, SAMPLE_RATE, load_audio, resample

    audio = load_audio(rec["audio_path"], SAMPLE_RATE)
    if telephone:
        from data.synth.channel import telephone_channel

        seed = int(hashlib.sha256(str(rec["id"]).encode()).hexdigest()[:8], 16)
        phone, _ = telephone_channel(audio, SAMPLE_RATE, np.random.default_rng(seed))
        audio = resample(phone, PHONE_SAMPLE_RATE, SAMPLE_RATE)
    return audio


# -- feature cache ---------------------------------------------------------------------------------
def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_rows(folder: Path, n: int, compute: Callable[[Sequence[int]], np.ndarray], desc: str) -> np.ndarray:
    """Rows 0..n-1 computed ``CHUNK`` at a time by ``compute(indices)`` and saved as ``folder/chunk_*.npy``;
    chunks already on disk are read back, so an interrupted run resumes where it stopped."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    starts = range(0, n, CHUNK)
    with tqdm(total=n, desc=desc, unit="utt", mininterval=2.0, dynamic_ncols=True) as bar:
        for start in starts:
            path = folder / f"chunk_{start:07d}.npy"
            idx = list(range(start, min(start + CHUNK, n)))
            if path.is_file():
                rows = np.load(path)
            else:
                rows = compute(idx)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, rows)
                tmp.replace(path)
            parts.append(rows)
            bar.update(len(idx))
    return np.concatenate(parts) if parts else np.zeros((0,))


def split_features(model, records: Sequence[dict], split: str, data_cfg: EmotionDataConfig, telephone: bool
                   ) -> tuple[np.ndarray | None, np.ndarray]:
    """(pooled encoder states or None, prosody) of ``records``, from the cache when present."""
    from models.emotion.model import centre_crop, compute_layers
    from models.emotion.prosody import FEATURE_NAMES, prosody_features

    cache = _repo_path(data_cfg.cache_dir)
    content = [(r["id"], r["audio_path"]) for r in records]
    audio_memo: dict[int, np.ndarray] = {}

    def audio(i: int) -> np.ndarray:
        if i not in audio_memo:
            audio_memo.clear()
            audio_memo[i] = load_utterance(records[i], telephone)
        return audio_memo[i]

    cfg = model.cfg
    enc = None
    if cfg.use_encoder:
        n_layers = compute_layers(cfg)
        spec = model.featurizer.spec
        key = _key("enc", FEATURE_VERSION, content, telephone, spec.source, spec.n_layers, spec.d_model, n_layers, cfg.max_seconds)

        def enc_rows(idx: Sequence[int]) -> np.ndarray:
            clips = [centre_crop(audio(i), cfg.max_seconds) for i in idx]
            return model.featurizer.pooled_many(clips, n_layers=n_layers).astype(np.float16)

        enc = cached_rows(cache / key, len(records), enc_rows, f"encoder {split}").astype(np.float32)
    pkey = _key("prosody", FEATURE_VERSION, content, telephone, list(FEATURE_NAMES))
    pro = cached_rows(cache / pkey, len(records),
                      lambda idx: np.stack([prosody_features(audio(i)) for i in idx]), f"prosody {split}")
    return enc, pro


# -- metrics ---------------------------------------------------------------------------------------
def score(probs: np.ndarray, gold: Sequence[int], labels: Sequence[str], ece_bins: int = DEFAULT_ECE_BINS,
          arousal: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, macro-F1 (labels present), per-class recall, ECE, and arousal MAE against the label targets."""
    from models.emotion.model import arousal_targets
    from training.tracking import per_class_f1

    gold = np.asarray(gold)
    pred = np.argmax(probs, axis=1)
    names_true = [labels[k] for k in gold]
    names_pred = [labels[k] for k in pred]
    f1 = per_class_f1(names_true, names_pred, labels)
    present = set(names_true)
    out = {
        "accuracy": float(np.mean(pred == gold)),
        "macro_f1": float(np.mean([f1[e] for e in labels if e in present])),
        "ece": expected_calibration_error(probs, gold.tolist(), ece_bins),
    }
    for k, lab in enumerate(labels):
        if np.any(gold == k):
            out[f"recall_{lab}"] = float(np.mean(pred[gold == k] == k))
    if arousal is not None:
        out["arousal_mae"] = float(np.mean(np.abs(arousal - arousal_targets(names_true))))
    return out


# -- the run ---------------------------------------------------------------------------------------
def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hotline train emotion", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="experiment YAML (default: training/configs/emotion.yaml)")
    p.add_argument("--out", default=None, help="also keep the saved model directory here")
    p.add_argument("overrides", nargs="*", help="config overrides like data.max_train=64 trainer.max_steps=2")
    return p.parse_args(list(argv) if argv is not None else None)


def _model_cfg(model_cfg: ConfigDict):
    from models.emotion.model import EmotionModelConfig

    rest = ConfigDict({k: v for k, v in model_cfg.items() if k != "backend"}, path="model")
    rest.sources = dict(model_cfg.sources)
    return to_dataclass(EmotionModelConfig, rest)


def train_head(model, x_train, y_train, a_train, x_val, y_val, optim_cfg, trainer_cfg, batch_size: int):
    """Fit ``model.net`` on head inputs with training/loop.fit; early stopping on val_head_macro_f1 (per epoch)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from models.emotion.fusion import macro_f1
    from training.loop import fit

    model.set_normalisation(x_train, y_train)
    ds = TensorDataset(torch.as_tensor(x_train), torch.as_tensor(np.asarray(y_train), dtype=torch.long),
                       torch.as_tensor(a_train))
    g = torch.Generator().manual_seed(trainer_cfg.seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g)
    val_ds = TensorDataset(torch.as_tensor(x_val), torch.as_tensor(np.asarray(y_val), dtype=torch.long))
    val_loader = DataLoader(val_ds, batch_size=1024)

    def evaluate_fn(_net) -> dict[str, float]:
        logits, _ = model.scores(x_val)
        return {"val_head_macro_f1": macro_f1(logits, y_val, len(model.labels))}

    return fit(model.net, loader, val_loader, optim_cfg, trainer_cfg, evaluate_fn)


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow
    import torch

    from models.emotion.fusion import compare, fit_fusion, fit_recall_bias, fuse, with_bias
    from models.emotion.model import EmotionModel, arousal_targets
    from models.emotion.text_signal import LexiconTextSignal, NgramTextSignal, read_weibo, score_text
    from training.loop import OptimConfig, TrainerConfig, seed_everything
    from training.registry import register_and_maybe_promote
    from training.tracking import log_confusion_matrix, log_metrics, log_per_class_f1, start_run

    # 1. parse arguments and compose the config
    args = _parse(argv)
    cfg = load_config(args.config, args.overrides)
    data_cfg = to_dataclass(EmotionDataConfig, cfg["data"])
    optim_cfg = to_dataclass(OptimConfig, cfg["optim"])
    trainer_cfg = to_dataclass(TrainerConfig, cfg["trainer"])
    calib_cfg = to_dataclass(CalibrationConfig, cfg.get("calibration", {}))
    eval_cfg = to_dataclass(EvaluationConfig, cfg.get("evaluation", {}))
    model_name = str(cfg.get("name", "emotion"))
    backend = cfg["model"].get("backend", "whisper")
    if backend not in ("whisper", "hf"):
        raise ConfigError(f"model.backend '{backend}' is not one of whisper, hf (set in {cfg['model'].where('backend')})")
    labels = EMOTIONS
    index = {e: i for i, e in enumerate(labels)}

    # 2. seed everything, cap threads (spin-waiting OpenMP threads on a shared CPU are very slow)
    seed_everything(trainer_cfg.seed)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    t0 = time.time()

    # 3. data
    data = load_data(data_cfg)
    telephone = bool(data_cfg.emotion_folders) and data_cfg.telephone
    y = {s: [index[r["emotion"]] for r in recs] for s, recs in data.items()}
    counts = {s: {e: sum(r["emotion"] == e for r in recs) for e in labels} for s, recs in data.items()}
    source = f"folders {data_cfg.emotion_folders}" if data_cfg.emotion_folders else f"corpus {data_cfg.corpus_dir}"
    print(f"[emotion] data ({source}): " + ", ".join(f"{len(data[s])} {s}" for s in SPLITS))
    if data_cfg.corpus_dir and not data_cfg.emotion_folders:
        manifest = _repo_path(data_cfg.corpus_dir) / "train.jsonl"
    else:
        manifest = None

    with start_run(model_name, cfg, dataset_manifest=manifest) as run:
        log_metrics({f"n_{s}_{e}": c for s, cs in counts.items() for e, c in cs.items()})
        metrics: dict[str, float] = {}
        if backend == "whisper":
            # 4. features, cached
            model = EmotionModel.create(_model_cfg(cfg["model"]), labels)
            base_cfg = model.cfg
            feat_model = EmotionModel(replace(base_cfg, use_encoder=True, use_prosody=True) if eval_cfg.ablation else base_cfg,
                                      labels, model.net, featurizer=model._featurizer)
            t_feat = time.time()
            feats = {s: split_features(feat_model, data[s], s, data_cfg, telephone) for s in SPLITS}
            metrics["feature_seconds"] = time.time() - t_feat
            a_train = arousal_targets([r["emotion"] for r in data["train"]])

            def head_inputs(m: EmotionModel) -> dict[str, np.ndarray]:
                return {s: m.inputs(*feats[s]) for s in SPLITS}

            # 5. ablation: the same features, three heads
            if eval_cfg.ablation:
                for variant, (use_enc, use_pro) in ABLATION.items():
                    vcfg = replace(base_cfg, use_encoder=use_enc, use_prosody=use_pro)
                    if vcfg == base_cfg:
                        continue  # the configured model itself: trained below and logged under its variant name
                    m = EmotionModel.create(vcfg, labels, d_model=feat_model.featurizer.spec.d_model)
                    xs = head_inputs(m)
                    seed_everything(trainer_cfg.seed)
                    train_head(m, xs["train"], y["train"], a_train, xs["validation"], y["validation"],
                               optim_cfg, trainer_cfg, data_cfg.batch_size)
                    m.temperature = fit_temperature(m.scores(xs["validation"])[0], y["validation"], calib_cfg.method)
                    for split in ("validation", "test"):
                        p, a = m.probs(xs[split])
                        sc = score(p, y[split], labels, calib_cfg.ece_bins, a)
                        metrics.update({f"ablation_{variant}_{split}_{k}": v for k, v in sc.items()})
                    print(f"[emotion] ablation {variant}: test macro-F1 {metrics[f'ablation_{variant}_test_macro_f1']:.4f}")

            # 6. fit the configured model
            xs = head_inputs(model)
            seed_everything(trainer_cfg.seed)
            t_fit = time.time()
            result = train_head(model, xs["train"], y["train"], a_train, xs["validation"], y["validation"],
                                optim_cfg, trainer_cfg, data_cfg.batch_size)
            metrics["fit_seconds"] = time.time() - t_fit
            val_logits, val_arousal = model.scores(xs["validation"])
            test_logits, test_arousal = model.scores(xs["test"])
        else:
            from models.emotion.hf_backend import HFEmotionModel, HFModelConfig, train_hf

            rest = ConfigDict({k: v for k, v in cfg["model"].items() if k != "backend"}, path="model")
            rest.sources = dict(cfg["model"].sources)
            model = HFEmotionModel.create(to_dataclass(HFModelConfig, rest), labels)
            audios = {s: [load_utterance(r, telephone) for r in data[s]] for s in SPLITS}
            t_fit = time.time()
            result = train_hf(model, audios["train"], y["train"], audios["validation"], y["validation"],
                              optim_cfg, trainer_cfg, data_cfg.batch_size)
            metrics["fit_seconds"] = time.time() - t_fit
            val_logits, val_arousal = model.scores(audios["validation"])
            test_logits, test_arousal = model.scores(audios["test"])

        # 7. calibrate
        temperature = fit_temperature(val_logits, y["validation"], calib_cfg.method)
        model.temperature = temperature
        calib = {
            "temperature": temperature,
            "val_nll_before": negative_log_likelihood(val_logits, y["validation"], 1.0),
            "val_nll_after": negative_log_likelihood(val_logits, y["validation"], temperature),
            "val_ece_before": expected_calibration_error(softmax(val_logits), y["validation"], calib_cfg.ece_bins),
            "val_ece_after": expected_calibration_error(softmax(val_logits, temperature), y["validation"], calib_cfg.ece_bins),
        }
        log_metrics(calib)
        p_val, p_test = softmax(val_logits, temperature), softmax(test_logits, temperature)
        val_metrics = {f"val_{k}": v for k, v in score(p_val, y["validation"], labels, calib_cfg.ece_bins, val_arousal).items()}
        log_metrics(val_metrics)

        # 8. evaluate on test
        test_metrics = {f"test_{k}": v for k, v in score(p_test, y["test"], labels, calib_cfg.ece_bins, test_arousal).items()}
        test_metrics["test_ece_uncalibrated"] = expected_calibration_error(softmax(test_logits), y["test"], calib_cfg.ece_bins)
        metrics.update(test_metrics)
        if backend == "whisper" and eval_cfg.ablation:
            variant = next(v for v, (e, p) in ABLATION.items() if (e, p) == (model.cfg.use_encoder, model.cfg.use_prosody))
            for split, sc in (("validation", val_metrics), ("test", test_metrics)):
                pre = "val_" if split == "validation" else "test_"
                metrics.update({f"ablation_{variant}_{split}_{k[len(pre):]}": v for k, v in sc.items()})
        names_true = [labels[k] for k in y["test"]]
        names_pred = [labels[k] for k in np.argmax(p_test, axis=1)]
        log_confusion_matrix(names_true, names_pred, labels, "test_confusion")
        f1 = log_per_class_f1(names_true, names_pred, labels, "test_per_class_f1", metric_prefix="test_")
        metrics.update({f"test_f1_{e}": v for e, v in f1.items()})
        _log_reliability(p_test, y["test"], calib_cfg.ece_bins)

        # 9. text signal and fusion (chosen on validation, scored on test)
        lexicon = LexiconTextSignal(labels=labels)
        texts = {s: [r.get("text") or "" for r in data[s]] for s in SPLITS}
        text_probs = {s: lexicon.predict_proba(texts[s]) for s in ("validation", "test")}
        ngram = None
        if eval_cfg.text_ngram and any(texts["train"]):
            ngram = NgramTextSignal(labels).fit(texts["train"], [r["emotion"] for r in data["train"]])
            from models.emotion.text_signal import combine

            candidates = {"lexicon": text_probs, "ngram": {s: ngram.predict_proba(texts[s]) for s in ("validation", "test")}}
            candidates["lexicon_ngram"] = {s: combine(candidates["lexicon"][s], candidates["ngram"][s]) for s in ("validation", "test")}
            for name, probs in candidates.items():
                metrics[f"text_{name}_val_macro_f1"] = score_text(probs["validation"], [labels[k] for k in y["validation"]], labels).macro_f1
                metrics[f"text_{name}_test_macro_f1"] = score_text(probs["test"], [labels[k] for k in y["test"]], labels).macro_f1
            text_choice = max(candidates, key=lambda n: metrics[f"text_{n}_val_macro_f1"])
            text_probs = candidates[text_choice]
        else:
            text_choice = "lexicon"
        rule = fit_fusion(p_val, text_probs["validation"], y["validation"])
        fusion = {"fusion_text_weight": rule.text_weight}
        for split, p_a, key in (("val", p_val, "validation"), ("test", p_test, "test")):
            fusion.update({f"fusion_{split}_{k}": v for k, v in compare(p_a, text_probs[key], y[key], rule, labels).items()})
        # escalation operating point: a log-bias on angry reaching evaluation.angry_recall_target on validation
        angry = index.get("angry")
        if angry is not None and eval_cfg.angry_recall_target:
            fused_val = fuse(p_val, text_probs["validation"], rule.text_weight)
            bias = fit_recall_bias(fused_val, y["validation"], angry, eval_cfg.angry_recall_target)
            fusion["operating_angry_bias"] = bias
            for split, p_a, key in (("val", p_val, "validation"), ("test", p_test, "test")):
                op = with_bias(fuse(p_a, text_probs[key], rule.text_weight), angry, bias)
                sc = score(op, y[key], labels, calib_cfg.ece_bins)
                fusion.update({f"operating_{split}_{k}": v for k, v in sc.items() if k in ("macro_f1", "accuracy", "recall_angry")})
        metrics.update(fusion)
        if eval_cfg.weibo_path:
            wpath = _repo_path(eval_cfg.weibo_path)
            if wpath.is_file():
                wt, wl = read_weibo(wpath)
                ws = score_text(lexicon.predict_proba(wt), wl, labels)
                metrics.update({"weibo_lexicon_macro_f1": ws.macro_f1, "weibo_lexicon_accuracy": ws.accuracy,
                                **{f"weibo_lexicon_f1_{k}": v for k, v in ws.per_class_f1.items()}})
                if ngram is not None:
                    metrics["weibo_ngram_macro_f1"] = score_text(ngram.predict_proba(wt), wl, labels).macro_f1
            else:
                print(f"[emotion] evaluation.weibo_path {wpath} not found: Weibo check skipped", file=sys.stderr)

        # 10. calls: trajectories and alerts
        if eval_cfg.max_calls > 0 and data_cfg.corpus_dir and not data_cfg.emotion_folders:
            metrics.update(_evaluate_calls(model, _repo_path(data_cfg.corpus_dir), eval_cfg))
        metrics["train_wall_seconds"] = time.time() - t0
        log_metrics(metrics)

        # 11. save, log, register
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(args.out) if args.out else Path(tmp) / MODEL_ARTIFACT
            model.save(model_dir)
            (model_dir / "fusion.json").write_text(json.dumps(
                {"text_signal": text_choice, "text_weight": rule.text_weight, "val_macro_f1": rule.val_macro_f1,
                 "angry_bias": fusion.get("operating_angry_bias", 0.0),
                 "ngram": ngram.to_dict() if ngram is not None and text_choice != "lexicon" else None},
                ensure_ascii=False), encoding="utf-8")
            (model_dir / "metrics.json").write_text(
                json.dumps({**calib, **val_metrics, **metrics}, ensure_ascii=False, indent=2), encoding="utf-8")
            if run is not None:
                log_model_dir(model_dir)
        decision = None
        if run is not None:
            if eval_cfg.promote_metric not in val_metrics:
                raise ConfigError(f"evaluation.promote_metric '{eval_cfg.promote_metric}' is not one of {sorted(val_metrics)}")
            decision = register_and_maybe_promote(run.info.run_id, MODEL_ARTIFACT, model_name, eval_cfg.promote_metric,
                                                  val_metrics[eval_cfg.promote_metric])

    print(_summary(metrics, calib, result.global_step, decision, labels))
    return 0


def log_model_dir(model_dir: Path) -> None:
    """Log the saved model directory as the run's MLflow model ``model`` (pyfunc flavour; the directory itself is
    ``model/artifacts/emotion_model``), so the registry can version it."""
    import mlflow
    from importlib.metadata import PackageNotFoundError, version

    from models.emotion import model as emotion_model

    pins = []
    for pkg in ("torch", "numpy", "safetensors", "transformers", "scipy", "soundfile"):
        try:
            pins.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    mlflow.pyfunc.log_model(name=MODEL_ARTIFACT, python_model=emotion_model.EmotionPyfuncModel(),
                            artifacts={emotion_model.PYFUNC_ARTIFACT: str(model_dir)}, pip_requirements=pins)


def _log_reliability(probs: np.ndarray, gold: Sequence[int], bins: int) -> None:
    """Reliability diagram of the calibrated test probabilities (``plots/test_reliability.png``)."""
    from training.tracking import _active, _pyplot, log_figure

    if _active() is None:
        return
    plt = _pyplot()
    conf = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == np.asarray(gold)
    edges = np.linspace(0, 1, bins + 1)
    mids, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append(conf[m].mean())
            accs.append(correct[m].mean())
    fig, ax = plt.subplots(figsize=(4, 4), constrained_layout=True)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(mids, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"test reliability (ECE {expected_calibration_error(probs, list(gold), bins):.3f})")
    log_figure(fig, "plots/test_reliability.png")


def _evaluate_calls(model, corpus_dir: Path, eval_cfg: EvaluationConfig) -> dict[str, float]:
    """Trajectories of up to ``max_calls`` test calls: alert rate on angry/anxious callers vs the others,
    call-level emotion accuracy, time to the first angry segment on angry calls."""
    from data.audio import SAMPLE_RATE, load_audio_channels
    from data.manifest import read_manifest
    from models.emotion.trajectory import AlertOptions, score_call

    path = corpus_dir / "calls.jsonl"
    if not path.is_file():
        return {}
    calls = [r for r in read_manifest(path).records if r.get("split") == "test" and r.get("turns")]
    calls = calls[: eval_cfg.max_calls]
    if not calls:
        return {}
    options = AlertOptions(threshold=eval_cfg.alert_threshold, min_span_s=eval_cfg.alert_min_span_s)
    hits = {"escalating": [], "calm": []}
    correct, first_angry = [], []
    for rec in calls:
        stereo = load_audio_channels(Path(corpus_dir) / rec["audio_stereo"], SAMPLE_RATE, allow_silent=True)
        ce = score_call(model, stereo[-1], rec["turns"], options)
        hits["escalating" if rec["emotion"] in options.emotions else "calm"].append(ce.alert)
        correct.append(ce.call_emotion == rec["emotion"])
        if rec["emotion"] == "angry" and ce.first_angry_s is not None:
            first_angry.append(ce.first_angry_s)
    out = {"calls_scored": float(len(calls)), "calls_emotion_accuracy": float(np.mean(correct))}
    if hits["escalating"]:
        out["calls_alert_rate_escalating"] = float(np.mean(hits["escalating"]))
    if hits["calm"]:
        out["calls_alert_rate_calm"] = float(np.mean(hits["calm"]))
    if first_angry:
        out["calls_first_angry_s_mean"] = float(np.mean(first_angry))
    return out


def _summary(metrics: Mapping[str, float], calib: Mapping[str, float], steps: int, decision: Any, labels) -> str:
    g = metrics.get
    lines = [
        f"[emotion] {steps} steps, fit {g('fit_seconds', 0):.0f}s, features {g('feature_seconds', 0):.0f}s, "
        f"total {g('train_wall_seconds', 0):.0f}s; temperature {calib['temperature']:.3f} "
        f"(val ECE {calib['val_ece_before']:.4f} -> {calib['val_ece_after']:.4f})",
        f"test: macro-F1 {g('test_macro_f1', float('nan')):.4f}, accuracy {g('test_accuracy', float('nan')):.4f}, "
        f"angry recall {g('test_recall_angry', float('nan')):.4f}, ECE {g('test_ece', float('nan')):.4f}",
        "per-class F1: " + ", ".join(f"{e} {g('test_f1_' + e, float('nan')):.3f}" for e in labels),
    ]
    abl = [v for v in ABLATION if f"ablation_{v}_test_macro_f1" in metrics]
    if abl:
        lines.append("ablation test macro-F1: " + ", ".join(f"{v} {metrics[f'ablation_{v}_test_macro_f1']:.4f}" for v in abl))
    if "fusion_test_fused_macro_f1" in metrics:
        lines.append(f"fusion (text weight {g('fusion_text_weight'):.2f}) test macro-F1: audio {g('fusion_test_audio_macro_f1'):.4f}, "
                     f"text {g('fusion_test_text_macro_f1'):.4f}, fused {g('fusion_test_fused_macro_f1'):.4f}; angry recall audio "
                     f"{g('fusion_test_audio_angry_recall', float('nan')):.4f}, fused {g('fusion_test_fused_angry_recall', float('nan')):.4f}")
    if "operating_test_macro_f1" in metrics:
        lines.append(f"fused + angry bias {g('operating_angry_bias'):.1f} (set on validation) test: macro-F1 "
                     f"{g('operating_test_macro_f1'):.4f}, angry recall {g('operating_test_recall_angry', float('nan')):.4f}")
    if "weibo_lexicon_macro_f1" in metrics:
        lines.append(f"Weibo text signal macro-F1 (lexicon): {g('weibo_lexicon_macro_f1'):.4f}")
    if decision is not None:
        lines.append(f"registry: {decision.model_name} v{decision.version} {'promoted to @champion' if decision.promoted else 'not promoted'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
