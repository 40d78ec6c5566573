"""The audio side of the synthetic corpus: espeak-ng speech (data/synth/tts.py) and the telephone channel
(data/synth/channel.py). Runs the real espeak-ng; a few seconds in all."""

from __future__ import annotations

import json
import random
import re
import statistics
import warnings

import numpy as np
import pytest

from data.audio import ESPEAK_SAMPLE_RATE, PHONE_SAMPLE_RATE, SAMPLE_RATE
from data.synth import tts
from data.synth.channel import (
    NOISE_KINDS,
    ChannelConfig,
    alaw_decode,
    alaw_encode,
    background_noise,
    mulaw_decode,
    mulaw_encode,
    telephone_channel,
    to_model_rate,
)
from data.synth.tts import (
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    Prosody,
    Speaker,
    SynthesisError,
    espeak_input,
    espeak_variants,
    make_speakers,
    number_to_hanzi,
    parse_wav,
    prosody_for,
    run_espeak,
    synthesize,
)
from models.taxonomy import DIALECTS, EMOTIONS, UnknownLabelError

COMPLAINT = "我的快递已经三天了还没到，你们怎么回事？"  # 18 characters, two clauses
SPEAKER = Speaker("spk_test", "female", "f3", pitch=50, speed=175, amplitude=100)
NEUTRAL = Prosody(pitch=50, pitch_range=50, speed=175, amplitude=100, word_gap=0)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def voiced_fraction(x: np.ndarray, rate: int) -> float:
    """Fraction of 20 ms frames within 30 dB of the loudest frame."""
    frame = int(0.02 * rate)
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    energy = np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12
    return float(np.mean(energy > energy.max() * 1e-3))


# -- espeak input ---------------------------------------------------------------------------------------


def test_espeak_input_voices_and_pinyin():
    voice, spoken = espeak_input("你好，我的订单。", "mandarin")
    assert voice == "cmn-latn-pinyin"
    assert spoken == "ni2 hao3 , wo3 de5 ding4 dan1 ."  # third-tone sandhi on 你好, pauses for punctuation
    voice, spoken = espeak_input("你好，我的订单。", "cantonese")
    assert voice == "yue" and spoken == "你好 , 我的订单 ."  # characters go to the Cantonese voice as they are


def test_dialect_transforms():
    text = "我是四川人，你那个手机真难用，发货"
    sw = espeak_input(text, "southwestern")[1].split()
    assert not any(s.startswith(("zh", "ch", "sh")) for s in sw)  # retroflexes merge into z/c/s
    assert not any(re.match(r"n[a-z]", s) for s in sw)  # n merges into l
    assert "li4" in sw  # 你 ni3 -> li, Mandarin tone 3 -> Sichuanese 53 (tone 4 contour)
    assert "si2" in sw  # 是 shi4 -> si, Mandarin tone 4 -> Sichuanese 213 (tone 2 contour)
    wu = espeak_input(text, "wu")[1].split()
    assert wu[0] == "wu3" and "nong3" in wu  # Shanghainese 我, 侬
    mn = espeak_input(text, "min")[1].split()
    assert mn[0] == "gua4" and "li4" in mn  # Hokkien 我, 你
    assert not any(s.startswith("f") for s in mn)  # Min has no f: 发 fa -> hua
    assert any(s.startswith("hua") for s in mn)
    mandarin = espeak_input(text, "mandarin")[1].split()
    assert len({tuple(mandarin), tuple(sw), tuple(wu), tuple(mn)}) == 4  # the stand-ins differ from Mandarin
    for syllables in (mandarin, sw, wu, mn):
        assert all(re.fullmatch(r"[a-zü]+[1-5]|[,.]", s) for s in syllables)


def test_number_reading():
    cases = {"0": "零", "2": "二", "10": "十", "15": "十五", "102": "一百零二", "110": "一百一十",
             "200": "两百", "1005": "一千零五", "2024": "两千零二十四", "05": "零五"}  # fmt: skip
    for digits, words in cases.items():
        assert number_to_hanzi(digits) == words, digits
    assert number_to_hanzi("13812345678") == "幺三八幺二三四五六七八"  # long runs digit by digit
    assert number_to_hanzi("123456", mandarin=False) == "一二三四五六"


def test_digits_and_latin_are_spoken_not_crashed():
    text = "订单号JD20240518，退款200元，打13812345678，10:30到，OK吗"
    for dialect in DIALECTS:
        voice, spoken = espeak_input(text, dialect)
        if dialect == "cantonese":
            assert not re.search(r"\d", spoken) and "J D" in spoken and "O K" in spoken
        else:
            assert all(re.fullmatch(r"[a-zü]+[1-5]|[,.]", s) for s in spoken.split())  # letters spelled in pinyin
        audio = synthesize(text, dialect, SPEAKER, NEUTRAL)
        assert len(audio) / ESPEAK_SAMPLE_RATE > 3.0
    with pytest.warns(UserWarning, match="dropped"):
        voice, spoken = espeak_input("快递丢了😡", "mandarin")
    assert spoken == "kuai4 di4 diu1 le5"


def test_unknown_dialect_or_emotion():
    with pytest.raises(UnknownLabelError, match="dialect"):
        espeak_input("你好", "klingon")
    with pytest.raises(UnknownLabelError, match="emotion"):
        prosody_for("bored", SPEAKER, random.Random(0))


# -- synthesis -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_speaks(dialect):
    audio = synthesize(COMPLAINT, dialect, SPEAKER, NEUTRAL)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / ESPEAK_SAMPLE_RATE
    assert 2.0 < seconds < 8.0, seconds  # 18 syllables at 3-8 syllables a second, plus pauses
    assert np.max(np.abs(audio)) == pytest.approx(NEUTRAL.amplitude / 200, rel=1e-3)  # peak-normalised
    assert rms(audio) > 0.03
    assert voiced_fraction(audio, ESPEAK_SAMPLE_RATE) > 0.5


def test_dialects_sound_different():
    audios = [synthesize(COMPLAINT, d, SPEAKER, NEUTRAL) for d in DIALECTS]
    lengths = [len(a) for a in audios]
    for i in range(len(audios)):
        for j in range(i + 1, len(audios)):
            n = min(lengths[i], lengths[j])
            assert lengths[i] != lengths[j] or not np.allclose(audios[i][:n], audios[j][:n])


def test_prosody_is_applied():
    slow = synthesize(COMPLAINT, "mandarin", SPEAKER, Prosody(50, 50, 130, 100, 0))
    fast = synthesize(COMPLAINT, "mandarin", SPEAKER, Prosody(50, 50, 260, 100, 0))
    gappy = synthesize(COMPLAINT, "mandarin", SPEAKER, Prosody(50, 50, 175, 100, 5))
    plain = synthesize(COMPLAINT, "mandarin", SPEAKER, NEUTRAL)
    assert len(fast) < 0.75 * len(slow)
    no_pause = synthesize(COMPLAINT.replace("，", ""), "mandarin", SPEAKER, NEUTRAL)
    assert len(plain) - len(no_pause) > 0.15 * ESPEAK_SAMPLE_RATE  # the comma is a pause
    assert len(gappy) > len(plain)
    quiet = synthesize(COMPLAINT, "mandarin", SPEAKER, Prosody(50, 50, 175, 40, 0))
    assert np.max(np.abs(quiet)) == pytest.approx(0.2, rel=1e-3)
    flat = synthesize(COMPLAINT, "mandarin", SPEAKER, Prosody(50, 0, 175, 100, 0))
    assert not np.array_equal(flat[: len(plain)], plain[: len(flat)])  # SSML pitch range reaches espeak-ng


def test_emotion_profiles_move_parameters():
    speaker = make_speakers(1, seed=3)[0]
    rng = random.Random(0)
    draws = {e: [prosody_for(e, speaker, rng) for _ in range(400)] for e in EMOTIONS}

    def mean(e: str, field: str) -> float:
        return statistics.mean(getattr(p, field) for p in draws[e])

    assert mean("angry", "speed") > mean("neutral", "speed") > mean("sad", "speed")
    assert mean("anxious", "speed") > mean("neutral", "speed")
    assert mean("angry", "amplitude") > mean("neutral", "amplitude") > mean("sad", "amplitude")
    assert mean("angry", "pitch") > mean("neutral", "pitch") > mean("sad", "pitch")
    assert mean("happy", "pitch") > mean("neutral", "pitch")
    assert mean("angry", "pitch_range") > mean("neutral", "pitch_range") > mean("sad", "pitch_range")
    assert mean("happy", "pitch_range") > mean("neutral", "pitch_range")
    assert mean("anxious", "word_gap") < mean("neutral", "word_gap") < mean("sad", "word_gap")
    neutral = draws["neutral"]
    assert statistics.mean(p.pitch for p in neutral) == pytest.approx(speaker.pitch, abs=1)  # neutral = base
    assert statistics.mean(p.speed for p in neutral) == pytest.approx(speaker.speed, rel=0.02)
    # profiles overlap: some angry utterances are slower than some neutral ones
    assert min(p.speed for p in draws["angry"]) < max(p.speed for p in neutral)
    assert len({p.speed for p in draws["angry"]}) > 10  # random variation, not a fixed setting


def test_emotions_change_the_audio():
    rng = random.Random(1)
    loud, dur = {}, {}
    for e in ("angry", "sad", "anxious"):
        audios = [synthesize(COMPLAINT, "mandarin", s, prosody_for(e, s, rng)) for s in make_speakers(6, seed=11)]
        loud[e] = statistics.mean(rms(a) for a in audios)
        dur[e] = statistics.mean(len(a) for a in audios)
    assert loud["angry"] > 1.3 * loud["sad"]
    assert dur["anxious"] < 0.85 * dur["sad"]


def test_speakers_distinct_and_deterministic():
    speakers = make_speakers(300, seed=7)
    assert speakers == make_speakers(300, seed=7)
    assert speakers != make_speakers(300, seed=8)
    assert len({s.id for s in speakers}) == 300
    assert len({(s.variant, s.pitch, s.speed) for s in speakers}) == 300
    assert sum(s.gender == "female" for s in speakers) == 150
    assert all(s.variant in (FEMALE_VARIANTS if s.gender == "female" else MALE_VARIANTS) for s in speakers)
    assert len({s.variant for s in speakers}) >= 20
    assert set(FEMALE_VARIANTS + MALE_VARIANTS) <= espeak_variants()
    a, b = (synthesize(COMPLAINT, "mandarin", s, NEUTRAL) for s in speakers[:2])
    assert len(a) != len(b) or not np.allclose(a, b)


def test_synthesis_errors():
    with pytest.raises(SynthesisError, match="no voice 'no-such-voice'"):  # espeak-ng would read it as Norwegian
        run_espeak("<speak>ni3 hao3</speak>", "no-such-voice", 50, 175, 100, 0)
    bad = Speaker("spk_bad", "female", "no-such-variant", 50, 175, 100)
    with pytest.raises(SynthesisError, match="no-such-variant"):
        synthesize(COMPLAINT, "mandarin", bad, NEUTRAL)
    with pytest.raises(SynthesisError, match="nothing to speak"):
        synthesize("，。！", "cantonese", SPEAKER, NEUTRAL)
    with pytest.raises(SynthesisError, match="does not exist"):  # espeak-ng's stderr reaches the message
        tts._run([tts.ESPEAK_BINARY, "-v", "nosuchvoice", "--stdout", "ni3"], b"", what="test")
    with pytest.raises(SynthesisError, match="not a WAV"):
        parse_wav(b"garbage bytes here")


# -- telephone channel ----------------------------------------------------------------------------------

CLEAN = dict(packet_loss=0.0, level_db=(0.0, 0.0), codec="none")  # only noise varies


def band_db(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return 10 * np.log10(np.mean(spectrum[(freqs >= lo) & (freqs < hi)]))


def test_channel_band_limits_white_noise():
    white = np.random.default_rng(0).standard_normal(ESPEAK_SAMPLE_RATE * 3).astype(np.float32) * 0.1
    out, info = telephone_channel(white, ESPEAK_SAMPLE_RATE, np.random.default_rng(1), ChannelConfig(snr_db=(200, 200)))
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == pytest.approx(len(white) * PHONE_SAMPLE_RATE / ESPEAK_SAMPLE_RATE, abs=2)
    passband = band_db(out, PHONE_SAMPLE_RATE, 500, 3000)
    assert band_db(out, PHONE_SAMPLE_RATE, 0, 250) < passband - 25
    assert band_db(out, PHONE_SAMPLE_RATE, 3550, 4000) < passband - 25
    assert band_db(out, PHONE_SAMPLE_RATE, 400, 3300) > passband - 2  # the band itself passes
    json.dumps(info)  # manifest-ready
    assert set(info) >= {"codec", "snr_db", "noise", "gain_db", "gaps"} and info["codec"] in ("ulaw", "alaw")


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_channel_snr_as_requested(kind):
    speech = synthesize(COMPLAINT, "mandarin", SPEAKER, NEUTRAL)
    only = dict(noise_kinds=(kind,), noise_weights=(1.0,))
    clean, _ = telephone_channel(
        speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(5), ChannelConfig(snr_db=(300, 300), **only, **CLEAN)
    )
    for snr in (10.0, 25.0):
        noisy, info = telephone_channel(
            speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(5), ChannelConfig(snr_db=(snr, snr), **only, **CLEAN)
        )
        assert info["noise"] == kind and info["snr_db"] == snr
        measured = 10 * np.log10(
            np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2)
        )
        assert measured == pytest.approx(snr, abs=1.0)
    noisy, _ = telephone_channel(speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(5),
                                 ChannelConfig(snr_db=(20, 20), **only, **{**CLEAN, "codec": "alaw"}))  # fmt: skip
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert measured == pytest.approx(20, abs=1.5)  # companding noise adds little at 20 dB


def test_noise_kinds_differ_in_spectrum():
    rng = np.random.default_rng(0)
    tilt = {}
    for kind in NOISE_KINDS:
        noise = background_noise(kind, PHONE_SAMPLE_RATE * 2, PHONE_SAMPLE_RATE, rng)
        assert noise.dtype == np.float32 and noise.std() == pytest.approx(1.0, rel=1e-3)
        tilt[kind] = band_db(noise, PHONE_SAMPLE_RATE, 300, 800) - band_db(noise, PHONE_SAMPLE_RATE, 2500, 3400)
    assert tilt["brown"] > tilt["pink"] > tilt["white"] + 3
    with pytest.raises(ValueError, match="noise kind"):
        background_noise("rain", 100, PHONE_SAMPLE_RATE, rng)


def test_channel_gain_loss_and_determinism():
    speech = synthesize(COMPLAINT, "mandarin", SPEAKER, NEUTRAL)
    base = dict(snr_db=(300.0, 300.0), codec="none")
    ref, _ = telephone_channel(
        speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(2), ChannelConfig(**base, packet_loss=0.0, level_db=(0, 0))
    )
    quiet, info = telephone_channel(
        speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(2), ChannelConfig(**base, packet_loss=0.0, level_db=(-6, -6))
    )
    assert info["gain_db"] == [-6.0, -6.0, -6.0]
    assert rms(quiet) / rms(ref) == pytest.approx(10 ** (-6 / 20), rel=0.01)
    lossy, info = telephone_channel(
        speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(2), ChannelConfig(**base, packet_loss=1.0, level_db=(0, 0))
    )
    assert info["gaps"]
    for start, stop in info["gaps"]:
        assert stop - start >= 0.02 - 1e-9
        assert np.all(lossy[round(start * PHONE_SAMPLE_RATE) : round(stop * PHONE_SAMPLE_RATE)] == 0.0)
    again, again_info = telephone_channel(
        speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(2), ChannelConfig(**base, packet_loss=1.0, level_db=(0, 0))
    )
    assert np.array_equal(again, lossy) and again_info == info
    with pytest.raises(ValueError, match="codec"):
        telephone_channel(speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(0), ChannelConfig(codec="opus"))


def test_to_model_rate():
    speech = synthesize(COMPLAINT, "mandarin", SPEAKER, NEUTRAL)
    phone, _ = telephone_channel(speech, ESPEAK_SAMPLE_RATE, np.random.default_rng(0))
    wide = to_model_rate(phone)
    assert wide.dtype == np.float32 and len(wide) == 2 * len(phone) and SAMPLE_RATE == 2 * PHONE_SAMPLE_RATE
    assert band_db(wide, SAMPLE_RATE, 4300, 8000) < band_db(wide, SAMPLE_RATE, 500, 3000) - 40


# -- G.711 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_round_trip(law):
    encode, decode = {"ulaw": (mulaw_encode, mulaw_decode), "alaw": (alaw_encode, alaw_decode)}[law]
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 20000)
    codes = encode(x)
    assert codes.dtype == np.uint8
    y = decode(codes)
    assert y.dtype == np.float32
    err = np.abs(y - x)
    big = np.abs(x) > 0.01
    assert 0 < np.max(err[big] / np.abs(x[big])) < 0.05  # log companding: error at most ~3% of the value
    assert np.sqrt(np.mean(err**2)) > 1e-4  # really quantised, not a no-op
    assert len(np.unique(y)) <= 256 and len(np.unique(decode(np.arange(256, dtype=np.uint8)))) >= 255
    levels = decode(np.arange(256, dtype=np.uint8))
    assert np.array_equal(encode(levels)[levels != 0], np.arange(256)[levels != 0])  # each level is its own code
    assert np.all(np.abs(decode(encode(np.array([1.5, -1.5])))) <= 1.0)  # clips instead of wrapping


def test_g711_matches_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # the C reference in Python <= 3.12
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    x = pcm.astype(np.float64) / 32768
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(mulaw_encode(x), np.frombuffer(audioop.lin2ulaw(pcm.tobytes(), 2), np.uint8))
    assert np.array_equal(alaw_encode(x), np.frombuffer(audioop.lin2alaw(pcm.tobytes(), 2), np.uint8))
    ulaw_ref = np.frombuffer(audioop.ulaw2lin(codes.tobytes(), 2), np.int16)
    alaw_ref = np.frombuffer(audioop.alaw2lin(codes.tobytes(), 2), np.int16)
    assert np.array_equal(np.round(mulaw_decode(codes) * 32768).astype(np.int16), ulaw_ref)
    assert np.array_equal(np.round(alaw_decode(codes) * 32768).astype(np.int16), alaw_ref)
