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
 5. ablation (whisper backend): encoder-only, encoder+prosody and prosody-only heads on the same features, each
    without and with speaker normalisation; optionally a learning curve of the configured head on validation
 6. fit the configured model (class-weighted loss, early stopping on validation macro-F1); with
    ``model.speaker_norm`` its inputs are relative to each speaker's statistics over that split's (unlabelled)
    utterances: transductive, as a call centre would after a caller's first recordings
 7. calibrate: temperature scaling on validation logits; ECE before/after
 8. evaluate on test: macro-F1, accuracy, per-class F1 and recall, confusion matrix, ECE, arousal (and, for a
    normalising model, the same without any caller context)
 9. text signal and fusion, per transcript source (``evaluation.transcripts``: reference, simulated ASR errors,
    or a file of real recogniser output): lexicon / n-gram / audio / fused on validation and test; the fusion
    weight and the angry operating point are set on ``evaluation.operating_transcripts``; the Weibo texts
10. calls: customer segments of the test calls (per-turn labels) scored by the audio heads, normalising heads
    causally within the call (and on top of the caller's other recordings); trajectories and alerts
11. save the model directory, log it as the run's ``model`` artifact, register as ``emotion``
"""

from __future__ import annotations

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

from models.calibration import DEFAULT_ECE_BINS, calibrate, expected_calibration_error, fit_temperature, softmax
from models.taxonomy import EMOTIONS
from training.config import CONFIG_ROOT, ConfigDict, ConfigError, to_dataclass
from training.features import cache_key, cached_rows, read_split_manifest, repo_path

DEFAULT_CONFIG = CONFIG_ROOT / "emotion.yaml"
SPLITS = ("train", "validation", "test")
MODEL_ARTIFACT = "model"
FEATURE_VERSION = 1  # bump when feature computation changes: old caches are then ignored
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # speaker split of a folder corpus without its own splits
ABLATION = {"encoder_only": (True, False), "encoder_prosody": (True, True), "prosody_only": (False, True)}
NORM_SUFFIX = "_spknorm"  # ablation variant name suffix of the speaker-normalised heads


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
    max_calls: int = 50  # test calls scored per segment, for trajectories and alerts (0 = none)
    alert_threshold: float = 0.6  # AlertOptions.threshold for the call evaluation
    alert_min_span_s: float = 8.0  # AlertOptions.min_span_s
    angry_recall_target: float | None = 0.95  # escalation operating point on the fused scores (null: none)
    promote_metric: str = "val_macro_f1"  # registry: validation metric compared with the champion's
    transcripts: tuple[str, ...] = ("reference", "asr_noise")  # text sources scored: reference | asr_noise | JSONL path
    operating_transcripts: str = "asr_noise"  # the source the text-signal choice, fusion weight and angry bias are set on
    transcript_seed: int = 0  # seed of the simulated recognition errors (asr_noise)
    ngram_asr_augment: bool = True  # train the n-gram text signal on reference + ASR-noised training transcripts
    learning_curve: tuple[int, ...] = ()  # class-balanced training sizes of the configured head, scored on validation




# -- data ------------------------------------------------------------------------------------------
def read_corpus(corpus_dir: Path) -> dict[str, list[dict]]:
    """Utterance records with ``audio_path`` and ``emotion`` of each split manifest."""
    out = {}
    for split in SPLITS:
        path = corpus_dir / f"{split}.jsonl"
        m = read_split_manifest(path, "emotion", "data.corpus_dir must hold train.jsonl, validation.jsonl and test.jsonl "
                                f"(build one with `hotline data synth --out {corpus_dir}`), or set "
                                "data.emotion_folders=/path/to/CASIA")
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
        splits = read_folders(repo_path(cfg.emotion_folders), cfg.seed)
    elif cfg.corpus_dir:
        splits = read_corpus(repo_path(cfg.corpus_dir))
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
def split_features(model, records: Sequence[dict], split: str, data_cfg: EmotionDataConfig, telephone: bool
                   ) -> tuple[np.ndarray | None, np.ndarray]:
    """(pooled encoder states or None, prosody) of ``records``, from the cache when present."""
    from models.emotion.model import centre_crop, compute_layers
    from models.emotion.prosody import FEATURE_NAMES, prosody_features

    cache = repo_path(data_cfg.cache_dir)
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
        key = cache_key("enc", FEATURE_VERSION, content, telephone, spec.source, spec.n_layers, spec.d_model, n_layers, cfg.max_seconds)

        def enc_rows(idx: Sequence[int]) -> np.ndarray:
            clips = [centre_crop(audio(i), cfg.max_seconds) for i in idx]
            return model.featurizer.pooled_many(clips, n_layers=n_layers).astype(np.float16)

        enc = cached_rows(cache / key, len(records), enc_rows, f"encoder {split}").astype(np.float32)
    pkey = cache_key("prosody", FEATURE_VERSION, content, telephone, list(FEATURE_NAMES))
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


# -- text signal scores -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TextScores:
    macro_f1: float  # mean F1 over the labels present
    accuracy: float
    per_class_f1: dict[str, float]


def score_text(probs: np.ndarray, gold: Sequence[str], labels: Sequence[str] = EMOTIONS) -> TextScores:
    """Macro-F1 (over the labels present in ``gold``), accuracy and per-class F1 of a text signal's probabilities."""
    from training.tracking import per_class_f1

    pred = [labels[k] for k in np.argmax(probs, axis=1)]
    f1 = per_class_f1(gold, pred, labels)
    present = set(gold)
    return TextScores(float(np.mean([f1[e] for e in labels if e in present])),
                      float(np.mean([a == b for a, b in zip(gold, pred)])), f1)


# -- the run ---------------------------------------------------------------------------------------
def _model_cfg(model_cfg: ConfigDict):
    from models.emotion.model import EmotionModelConfig

    rest = ConfigDict({k: v for k, v in model_cfg.items() if k != "backend"}, path="model")
    rest.sources = dict(model_cfg.sources)
    return to_dataclass(EmotionModelConfig, rest)


def train_hf(model, train_audio, y_train, val_audio, y_val, optim_cfg, trainer_cfg, batch_size: int):
    """Fine-tune with training/loop.fit (early stopping on val_head_macro_f1)."""
    import torch
    from torch.utils.data import DataLoader

    from models.emotion.fusion import macro_f1
    from training.loop import fit

    model.set_class_weights(y_train)
    g = torch.Generator().manual_seed(trainer_cfg.seed)
    loader = DataLoader(list(zip(train_audio, [int(v) for v in y_train])), batch_size=batch_size, shuffle=True,
                        generator=g, collate_fn=model.collate)
    val_loader = DataLoader(list(zip(val_audio, [int(v) for v in y_val])), batch_size=batch_size, collate_fn=model.collate)

    def evaluate_fn(_net) -> dict[str, float]:
        logits, _ = model.scores(val_audio)
        return {"val_head_macro_f1": macro_f1(logits, y_val, len(model.labels))}

    return fit(model.net, loader, val_loader, optim_cfg, trainer_cfg, evaluate_fn)


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

    from models.emotion.model import EmotionModel, arousal_targets
    from models.emotion.text_signal import read_weibo
    from models.emotion.transcripts import source_name
    from training.loop import seed_everything
    from training.registry import promote_on
    from training.steps import compose, parse_args
    from training.tracking import log_confusion_matrix, log_metrics, log_per_class_f1, log_reliability, start_run

    # 1. parse arguments and compose the config
    args = parse_args("emotion", DEFAULT_CONFIG, __doc__, "data.max_train=64 trainer.max_steps=2", argv)
    setup = compose(args, EmotionDataConfig, CalibrationConfig, EvaluationConfig, default_name="emotion")
    cfg, data_cfg, optim_cfg, trainer_cfg = setup.cfg, setup.data, setup.optim, setup.trainer
    calib_cfg, eval_cfg, model_name = setup.calibration, setup.evaluation, setup.name
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
    speakers = {s: [str(r.get("speaker") or r["id"]) for r in recs] for s, recs in data.items()}
    counts = {s: {e: sum(r["emotion"] == e for r in recs) for e in labels} for s, recs in data.items()}
    source = f"folders {data_cfg.emotion_folders}" if data_cfg.emotion_folders else f"corpus {data_cfg.corpus_dir}"
    print(f"[emotion] data ({source}): " + ", ".join(f"{len(data[s])} {s}" for s in SPLITS))
    if data_cfg.corpus_dir and not data_cfg.emotion_folders:
        manifest = repo_path(data_cfg.corpus_dir) / "train.jsonl"
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
                """Head input rows per split; a normalising head's relative to each speaker in that split."""
                raw = {s: m.inputs(*feats[s]) for s in SPLITS}
                if not m.normalises:
                    return raw
                m.fit_speaker_prior(raw["train"], speakers["train"])
                return {s: m.normalise(raw[s], speakers[s]) for s in SPLITS}

            def fit_variant(m: EmotionModel) -> dict[str, np.ndarray]:
                xs = head_inputs(m)
                seed_everything(trainer_cfg.seed)
                train_head(m, xs["train"], y["train"], a_train, xs["validation"], y["validation"],
                           optim_cfg, trainer_cfg, data_cfg.batch_size)
                m.temperature = fit_temperature(m.scores(xs["validation"])[0], y["validation"], calib_cfg.method)
                return xs

            # 5. ablation: the same features, three heads, each without and with speaker normalisation
            heads: dict[str, EmotionModel] = {}
            norm_mode = base_cfg.speaker_norm if base_cfg.speaker_norm != "none" else "mean"
            if eval_cfg.ablation:
                for variant, (use_enc, use_pro) in ABLATION.items():
                    for norm, suffix in (("none", ""), (norm_mode, NORM_SUFFIX)):
                        vcfg = replace(base_cfg, use_encoder=use_enc, use_prosody=use_pro, speaker_norm=norm)
                        if vcfg == base_cfg:
                            continue  # the configured model itself: trained below and logged under its variant name
                        m = EmotionModel.create(vcfg, labels, d_model=feat_model.featurizer.spec.d_model)
                        xs = fit_variant(m)
                        heads[variant + suffix] = m
                        for split in ("validation", "test"):
                            p, a = m.probs(xs[split])
                            sc = score(p, y[split], labels, calib_cfg.ece_bins, a)
                            metrics.update({f"ablation_{variant}{suffix}_{split}_{k}": v for k, v in sc.items()})
                        print(f"[emotion] ablation {variant}{suffix}: test macro-F1 "
                              f"{metrics[f'ablation_{variant}{suffix}_test_macro_f1']:.4f}")
            for n in eval_cfg.learning_curve:
                if n >= len(data["train"]):
                    continue
                keep = {r["id"] for r in balanced_subsample(data["train"], n, data_cfg.seed)}
                sel = np.array([r["id"] in keep for r in data["train"]])
                m = EmotionModel.create(base_cfg, labels, d_model=feat_model.featurizer.spec.d_model)
                xs = head_inputs(m)
                seed_everything(trainer_cfg.seed)
                train_head(m, xs["train"][sel], list(np.asarray(y["train"])[sel]), a_train[sel], xs["validation"],
                           y["validation"], optim_cfg, trainer_cfg, data_cfg.batch_size)
                metrics[f"learning_curve_val_macro_f1_n{n}"] = score(m.probs(xs["validation"])[0], y["validation"], labels)["macro_f1"]
                print(f"[emotion] learning curve: {n} training utterances -> val macro-F1 "
                      f"{metrics[f'learning_curve_val_macro_f1_n{n}']:.4f}")

            # 6. fit the configured model
            xs = head_inputs(model)
            seed_everything(trainer_cfg.seed)
            t_fit = time.time()
            result = train_head(model, xs["train"], y["train"], a_train, xs["validation"], y["validation"],
                                optim_cfg, trainer_cfg, data_cfg.batch_size)
            metrics["fit_seconds"] = time.time() - t_fit
            if eval_cfg.learning_curve:
                metrics[f"learning_curve_val_macro_f1_n{len(data['train'])}"] = score(model.probs(xs["validation"])[0], y["validation"], labels)["macro_f1"]
            heads[next(v for v, (e, p) in ABLATION.items() if (e, p) == (model.cfg.use_encoder, model.cfg.use_prosody))
                  + (NORM_SUFFIX if model.normalises else "")] = model
            val_logits, val_arousal = model.scores(xs["validation"])
            test_logits, test_arousal = model.scores(xs["test"])
        else:
            from models.emotion.hf_backend import HFEmotionModel, HFModelConfig

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
        temperature, calib = calibrate(val_logits, y["validation"], calib_cfg.method, calib_cfg.ece_bins)
        model.temperature = temperature
        log_metrics(calib)
        p_val, p_test = softmax(val_logits, temperature), softmax(test_logits, temperature)
        val_metrics = {f"val_{k}": v for k, v in score(p_val, y["validation"], labels, calib_cfg.ece_bins, val_arousal).items()}
        log_metrics(val_metrics)

        # 8. evaluate on test
        test_metrics = {f"test_{k}": v for k, v in score(p_test, y["test"], labels, calib_cfg.ece_bins, test_arousal).items()}
        test_metrics["test_ece_uncalibrated"] = expected_calibration_error(softmax(test_logits), y["test"], calib_cfg.ece_bins)
        if backend == "whisper" and model.normalises:
            # the same model when the caller is unknown: every utterance normalised on its own (prior only)
            p_alone = model.probs(model.normalise(model.inputs(*feats["test"])))[0]
            test_metrics.update({f"test_nocontext_{k}": v for k, v in score(p_alone, y["test"], labels, calib_cfg.ece_bins).items()
                                 if k in ("macro_f1", "accuracy", "recall_angry", "ece")})
        metrics.update(test_metrics)
        if backend == "whisper" and eval_cfg.ablation:
            variant = next(v for v, (e, p) in ABLATION.items() if (e, p) == (model.cfg.use_encoder, model.cfg.use_prosody))
            variant += NORM_SUFFIX if model.normalises else ""
            for split, sc in (("validation", val_metrics), ("test", test_metrics)):
                pre = "val_" if split == "validation" else "test_"
                metrics.update({f"ablation_{variant}_{split}_{k[len(pre):]}": v for k, v in sc.items()})
        names_true = [labels[k] for k in y["test"]]
        names_pred = [labels[k] for k in np.argmax(p_test, axis=1)]
        log_confusion_matrix(names_true, names_pred, labels, "test_confusion")
        f1 = log_per_class_f1(names_true, names_pred, labels, "test_per_class_f1", metric_prefix="test_")
        metrics.update({f"test_f1_{e}": v for e, v in f1.items()})
        log_reliability(p_test, y["test"], calib_cfg.ece_bins)

        # 9. text signal and fusion per transcript source (chosen on the operating source's validation, scored on test)
        text_out = text_and_fusion(data, y, p_val, p_test, labels, eval_cfg, calib_cfg)
        metrics.update(text_out.metrics)
        lexicon, ngram, text_choice, rule = text_out.lexicon, text_out.ngram, text_out.choice, text_out.rule
        fusion = text_out.metrics
        if eval_cfg.weibo_path:
            wpath = repo_path(eval_cfg.weibo_path)
            if wpath.is_file():
                wt, wl = read_weibo(wpath)
                ws = score_text(lexicon.predict_proba(wt), wl, labels)
                metrics.update({"weibo_lexicon_macro_f1": ws.macro_f1, "weibo_lexicon_accuracy": ws.accuracy,
                                **{f"weibo_lexicon_f1_{k}": v for k, v in ws.per_class_f1.items()}})
                if ngram is not None:
                    metrics["weibo_ngram_macro_f1"] = score_text(ngram.predict_proba(wt), wl, labels).macro_f1
            else:
                print(f"[emotion] evaluation.weibo_path {wpath} not found: Weibo check skipped", file=sys.stderr)

        # 10. calls: per-segment scores (causal caller normalisation), trajectories and alerts
        if eval_cfg.max_calls > 0 and data_cfg.corpus_dir and not data_cfg.emotion_folders:
            if backend == "whisper":
                metrics.update(evaluate_calls(heads, model, feat_model, repo_path(data_cfg.corpus_dir), eval_cfg,
                                              test_rows=(data["test"], feats["test"]), labels=labels))
            else:
                metrics.update(_evaluate_calls(model, repo_path(data_cfg.corpus_dir), eval_cfg))
        metrics["train_wall_seconds"] = time.time() - t0
        log_metrics(metrics)

        # 11. save, log, register
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(args.out) if args.out else Path(tmp) / MODEL_ARTIFACT
            model.save(model_dir)
            (model_dir / "fusion.json").write_text(json.dumps(
                {"text_signal": text_choice, "text_weight": rule.text_weight, "val_macro_f1": rule.val_macro_f1,
                 "transcripts": source_name(eval_cfg.operating_transcripts),
                 "angry_bias": fusion.get("operating_angry_bias", 0.0),
                 "ngram": ngram.to_dict() if ngram is not None and text_choice != "lexicon" else None},
                ensure_ascii=False), encoding="utf-8")
            (model_dir / "metrics.json").write_text(
                json.dumps({**calib, **val_metrics, **metrics}, ensure_ascii=False, indent=2), encoding="utf-8")
            if run is not None:
                log_model_dir(model_dir)
        decision = None
        if run is not None:
            decision = promote_on(run.info.run_id, MODEL_ARTIFACT, model_name, eval_cfg.promote_metric, val_metrics)

    print(_summary(metrics, calib, result.global_step, decision, labels))
    return 0


@dataclass(frozen=True)
class TextFusion:
    metrics: dict  # text_*, fusion_*, operating_* metrics (see text_and_fusion)
    lexicon: Any  # the LexiconTextSignal
    ngram: Any  # the fitted NgramTextSignal, or None
    choice: str  # the text signal used in fusion: lexicon | ngram | lexicon_ngram
    rule: Any  # the FusionRule fitted on the operating source's validation split


def text_and_fusion(data: Mapping[str, Sequence[dict]], y: Mapping[str, Sequence[int]], p_val: np.ndarray,
                    p_test: np.ndarray, labels: Sequence[str], eval_cfg: EvaluationConfig,
                    calib_cfg: CalibrationConfig) -> TextFusion:
    """Text-only, audio-only and fused scores on validation and test for every transcript source.

    The text signal (lexicon, n-gram or both), the fusion weight and the angry operating point (a log-bias reaching
    ``angry_recall_target`` on validation) are chosen on ``operating_transcripts``, then applied unchanged to every
    source. Metrics: ``text_<signal>_<source>_{val,test}_macro_f1``; ``fusion_<source>_{val,test}_*`` and
    ``operating_<source>_{val,test}_*``; the operating source's also under the plain ``fusion_*``/``operating_*``."""
    from models.emotion.fusion import compare, fit_fusion, fit_recall_bias, fuse, with_bias
    from models.emotion.text_signal import LexiconTextSignal, NgramTextSignal, combine
    from models.emotion.transcripts import ASR_NOISE, REFERENCE, source_name, transcripts

    sources = list(dict.fromkeys([*eval_cfg.transcripts, eval_cfg.operating_transcripts]))
    names = {src: source_name(src) for src in sources}
    op = eval_cfg.operating_transcripts
    texts = {src: {s: transcripts(data[s], src, eval_cfg.transcript_seed) for s in ("validation", "test")} for src in sources}
    gold = {s: [labels[k] for k in y[s]] for s in ("validation", "test")}
    lexicon = LexiconTextSignal(labels=labels)
    ngram = None
    train_texts = [r.get("text") or "" for r in data["train"]]
    if eval_cfg.text_ngram and any(train_texts):
        train_labels = [r["emotion"] for r in data["train"]]
        if eval_cfg.ngram_asr_augment:
            train_labels = train_labels * 2
            train_texts = train_texts + transcripts(data["train"], ASR_NOISE, eval_cfg.transcript_seed + 1)
        ngram = NgramTextSignal(labels).fit(train_texts, train_labels)
    metrics: dict[str, float] = {}
    probs: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # source -> signal -> split -> probabilities
    for src in sources:
        cands = {"lexicon": {s: lexicon.predict_proba(texts[src][s]) for s in ("validation", "test")}}
        if ngram is not None:
            cands["ngram"] = {s: ngram.predict_proba(texts[src][s]) for s in ("validation", "test")}
            cands["lexicon_ngram"] = {s: combine(cands["lexicon"][s], cands["ngram"][s]) for s in ("validation", "test")}
        probs[src] = cands
        for sig, pr in cands.items():
            for s, tag in (("validation", "val"), ("test", "test")):
                f1 = score_text(pr[s], gold[s], labels).macro_f1
                metrics[f"text_{sig}_{names[src]}_{tag}_macro_f1"] = f1
                if src == REFERENCE:  # the keys of earlier runs: reference transcripts
                    metrics[f"text_{sig}_{tag}_macro_f1"] = f1
    choice = max(probs[op], key=lambda sig: metrics[f"text_{sig}_{names[op]}_val_macro_f1"])
    rule = fit_fusion(p_val, probs[op][choice]["validation"], y["validation"])
    metrics["fusion_text_weight"] = rule.text_weight
    angry = labels.index("angry") if "angry" in labels else None
    bias = None
    if angry is not None and eval_cfg.angry_recall_target:
        bias = fit_recall_bias(fuse(p_val, probs[op][choice]["validation"], rule.text_weight), y["validation"], angry,
                               eval_cfg.angry_recall_target)
        metrics["operating_angry_bias"] = bias
    for src in sources:
        tags = [f"fusion_{names[src]}"] + (["fusion"] if src == op else [])
        otags = [f"operating_{names[src]}"] + (["operating"] if src == op else [])
        for s, tag, p_a in (("validation", "val", p_val), ("test", "test", p_test)):
            p_t = probs[src][choice][s]
            cmp = compare(p_a, p_t, y[s], rule, labels)
            for t in tags:
                metrics.update({f"{t}_{tag}_{k}": v for k, v in cmp.items()})
            if bias is not None:
                sc = score(with_bias(fuse(p_a, p_t, rule.text_weight), angry, bias), y[s], labels, calib_cfg.ece_bins)
                for t in otags:
                    metrics.update({f"{t}_{tag}_{k}": v for k, v in sc.items() if k in ("macro_f1", "accuracy", "recall_angry", "ece")})
    return TextFusion(metrics, lexicon, ngram, choice, rule)


def _segment_metrics(probs: np.ndarray, gold: Sequence[int], labels: Sequence[str]) -> dict[str, float]:
    sc = score(probs, gold, labels)
    return {k: v for k, v in sc.items() if k in ("macro_f1", "accuracy", "recall_angry")}


def evaluate_calls(heads: Mapping[str, Any], model, feat_model, corpus_dir: Path, eval_cfg: EvaluationConfig,
                   test_rows: tuple[Sequence[dict], tuple] | None = None, labels: Sequence[str] = EMOTIONS) -> dict[str, float]:
    """Customer segments (turns, with their labels) of up to ``max_calls`` test calls, scored by every audio head.

    Plain heads score each segment alone. Normalising heads score them three ways: ``causal`` (relative to the
    caller's segments so far in this call: the live service), ``history`` (causal on top of the statistics of the
    caller's other recordings in the test split, unlabelled: a known caller) and ``alone`` (no caller context).
    Metrics ``calls_<head>_<how>_segment_{macro_f1,accuracy,recall_angry}`` and ``_call_accuracy`` (duration-weighted
    call emotion), plus the trajectory/alert metrics of the configured ``model`` (causal when it normalises)."""
    from data.audio import SAMPLE_RATE, is_silent, load_audio_channels
    from data.manifest import read_manifest
    from models.emotion.trajectory import MIN_SEGMENT_S, AlertOptions, SegmentScore, summarize

    path = corpus_dir / "calls.jsonl"
    if not path.is_file():
        return {}
    calls = [r for r in read_manifest(path).records if r.get("split") == "test" and r.get("turns")][: eval_cfg.max_calls]
    if not calls:
        return {}
    index = {e: i for i, e in enumerate(labels)}
    segs: list[tuple[int, float, float, int]] = []  # (call, start_s, end_s, gold)
    clips = []
    for c, rec in enumerate(calls):
        audio = load_audio_channels(Path(corpus_dir) / rec["audio_stereo"], SAMPLE_RATE, allow_silent=True)[-1]
        for t in rec["turns"]:
            if t.get("speaker") != "customer" or t.get("emotion") not in index:
                continue
            a, b = float(t["start_s"]), min(float(t["end_s"]), len(audio) / SAMPLE_RATE)
            clip = audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]
            if b - a < MIN_SEGMENT_S or is_silent(clip):
                continue
            segs.append((c, a, b, index[t["emotion"]]))
            clips.append(clip)
    if not segs:
        return {}
    enc, pro = feat_model.raw_features(clips)
    call_of = np.array([s[0] for s in segs])
    gold = [s[3] for s in segs]
    call_gold = [index.get(r["emotion"], -1) for r in calls]
    history_feats: dict[str, list[int]] = {}
    if test_rows is not None:
        for i, r in enumerate(test_rows[0]):
            history_feats.setdefault(str(r.get("speaker") or r["id"]), []).append(i)
    out: dict[str, float] = {"calls_scored": float(len(calls)), "calls_segments": float(len(segs)),
                             "calls_with_caller_history": float(sum(str(r.get("speaker") or "") in history_feats for r in calls))}
    options = AlertOptions(threshold=eval_cfg.alert_threshold, min_span_s=eval_cfg.alert_min_span_s)
    configured_probs = None
    for name, head in heads.items():
        rows = head.inputs(enc, pro)
        ways = {"alone": None}
        if head.normalises:
            ways = {"causal": None, "history": None, "alone": None}
        for how in ways:
            x = np.zeros_like(rows)
            for c, rec in enumerate(calls):
                m = call_of == c
                if not m.any():
                    continue
                if how == "alone":
                    x[m] = head.normalise(rows[m])
                    continue
                history = None
                spk = str(rec.get("speaker") or "")
                if how == "history" and test_rows is not None and spk in history_feats:  # else: causal alone
                    idx = history_feats[spk]
                    hist_rows = head.inputs(*(None if f is None else f[idx] for f in test_rows[1]))
                    history = head.new_caller().add(hist_rows)
                x[m] = head.normalise(rows[m], causal=True, history=history)
            probs = head.probs(x)[0]
            tag = f"calls_{name}_{how}" if head.normalises else f"calls_{name}"
            out.update({f"{tag}_segment_{k}": v for k, v in _segment_metrics(probs, gold, labels).items()})
            dur = np.array([s[2] - s[1] for s in segs])
            pred_call = [int(np.argmax((probs[call_of == c] * dur[call_of == c, None]).sum(0))) if (call_of == c).any() else -1
                         for c in range(len(calls))]
            out[f"{tag}_call_accuracy"] = float(np.mean([p == g for p, g in zip(pred_call, call_gold)]))
            if head is model and (how == "causal" or not head.normalises):
                configured_probs = probs
                out["calls_emotion_accuracy"] = out[f"{tag}_call_accuracy"]
    if configured_probs is not None:
        outcomes = []
        for c, rec in enumerate(calls):
            m = np.flatnonzero(call_of == c)
            scored = [SegmentScore(segs[i][1], segs[i][2], labels[int(np.argmax(configured_probs[i]))],
                                   {e: float(configured_probs[i][k]) for k, e in enumerate(labels)}, 0.0) for i in m]
            outcomes.append((rec["emotion"], summarize(scored, options)))
        out.update(_alert_metrics(outcomes, options))
    return out


def _alert_metrics(outcomes: Sequence[tuple[str, Any]], options: Any) -> dict[str, float]:
    """Alert rate on angry/anxious calls vs the others, and the mean time to the first angry segment on angry
    calls, from (the call's true emotion, its summarised trajectory) pairs."""
    hits: dict[str, list[bool]] = {"escalating": [], "calm": []}
    first_angry = []
    for emotion, ce in outcomes:
        hits["escalating" if emotion in options.emotions else "calm"].append(ce.alert)
        if emotion == "angry" and ce.first_angry_s is not None:
            first_angry.append(ce.first_angry_s)
    out = {f"calls_alert_rate_{k}": float(np.mean(v)) for k, v in hits.items() if v}
    if first_angry:
        out["calls_first_angry_s_mean"] = float(np.mean(first_angry))
    return out


def log_model_dir(model_dir: Path) -> None:
    """Log the saved model directory as the run's MLflow model ``model`` (pyfunc flavour; the directory itself is
    ``model/artifacts/emotion_model``), so the registry can version it."""
    import mlflow

    from models.emotion import model as emotion_model
    from training.tracking import pinned_requirements

    pins = pinned_requirements(("torch", "numpy", "safetensors", "transformers", "scipy", "soundfile"))
    mlflow.pyfunc.log_model(name=MODEL_ARTIFACT, python_model=emotion_model.EmotionPyfuncModel(),
                            artifacts={emotion_model.PYFUNC_ARTIFACT: str(model_dir)}, pip_requirements=pins)


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
    outcomes = []
    for rec in calls:
        stereo = load_audio_channels(Path(corpus_dir) / rec["audio_stereo"], SAMPLE_RATE, allow_silent=True)
        outcomes.append((rec["emotion"], score_call(model, stereo[-1], rec["turns"], options)))
    out = {"calls_scored": float(len(calls)),
           "calls_emotion_accuracy": float(np.mean([ce.call_emotion == emotion for emotion, ce in outcomes]))}
    out.update(_alert_metrics(outcomes, options))
    return out


def _summary(metrics: Mapping[str, float], calib: Mapping[str, float], steps: int, decision: Any, labels) -> str:
    g = metrics.get
    nan = float("nan")
    lines = [
        f"[emotion] {steps} steps, fit {g('fit_seconds', 0):.0f}s, features {g('feature_seconds', 0):.0f}s, "
        f"total {g('train_wall_seconds', 0):.0f}s; temperature {calib['temperature']:.3f} "
        f"(val ECE {calib['val_ece_before']:.4f} -> {calib['val_ece_after']:.4f})",
        f"test (audio): macro-F1 {g('test_macro_f1', nan):.4f}, accuracy {g('test_accuracy', nan):.4f}, "
        f"angry recall {g('test_recall_angry', nan):.4f}, ECE {g('test_ece', nan):.4f}",
        "per-class F1: " + ", ".join(f"{e} {g('test_f1_' + e, nan):.3f}" for e in labels),
    ]
    if "test_nocontext_macro_f1" in metrics:
        lines.append(f"same model without caller context: macro-F1 {g('test_nocontext_macro_f1'):.4f}, "
                     f"angry recall {g('test_nocontext_recall_angry', nan):.4f}")
    abl = sorted(k[len("ablation_"):-len("_test_macro_f1")] for k in metrics
                 if k.startswith("ablation_") and k.endswith("_test_macro_f1"))
    if abl:
        lines.append("ablation test macro-F1: " + ", ".join(f"{v} {metrics[f'ablation_{v}_test_macro_f1']:.4f}" for v in abl))
    lc = sorted((int(k.rsplit("_n", 1)[1]), v) for k, v in metrics.items() if k.startswith("learning_curve_val_macro_f1_n"))
    if lc:
        lines.append("learning curve (val macro-F1): " + ", ".join(f"{n}: {v:.4f}" for n, v in lc))
    srcs = sorted({k[len("fusion_"):-len("_test_fused_macro_f1")] for k in metrics
                   if k.startswith("fusion_") and k.endswith("_test_fused_macro_f1") and k != "fusion_test_fused_macro_f1"})
    for src in srcs:
        f = f"fusion_{src}_test_"
        lines.append(f"[{src} transcripts] test macro-F1 / angry recall: text {g(f + 'text_macro_f1', nan):.4f} / "
                     f"{g(f + 'text_angry_recall', nan):.4f}, fused {g(f + 'fused_macro_f1', nan):.4f} / "
                     f"{g(f + 'fused_angry_recall', nan):.4f}, fused + angry bias {g(f'operating_{src}_test_macro_f1', nan):.4f} / "
                     f"{g(f'operating_{src}_test_recall_angry', nan):.4f}")
    if "fusion_text_weight" in metrics:
        lines.append(f"fusion text weight {g('fusion_text_weight'):.2f}, angry bias {g('operating_angry_bias', 0.0):.1f} "
                     "(set on the operating transcripts' validation split)")
    calls = sorted(k[len("calls_"):-len("_segment_macro_f1")] for k in metrics if k.startswith("calls_") and k.endswith("_segment_macro_f1"))
    if calls:
        lines.append(f"test calls ({g('calls_segments', 0):.0f} customer segments) macro-F1 / angry recall: " + ", ".join(
            f"{c} {metrics[f'calls_{c}_segment_macro_f1']:.3f}/{g(f'calls_{c}_segment_recall_angry', nan):.3f}" for c in calls))
    if "weibo_lexicon_macro_f1" in metrics:
        lines.append(f"Weibo text signal macro-F1: lexicon {g('weibo_lexicon_macro_f1'):.4f}, n-gram {g('weibo_ngram_macro_f1', nan):.4f}")
    if decision is not None:
        lines.append(f"registry: {decision.model_name} v{decision.version} {'promoted to @champion' if decision.promoted else 'not promoted'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
