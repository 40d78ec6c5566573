"""Chinese speech from text with espeak-ng: synthetic speakers, emotional prosody, five dialects.

How faithful each dialect is (say so wherever the corpus is described):

- ``mandarin``: faithful. Text -> pypinyin (tone numbers, tone sandhi) -> espeak-ng voice ``cmn-latn-pinyin``.
  espeak-ng's own ``cmn`` voice reads Chinese characters wrongly (pinyin with tone digits read in English).
- ``cantonese``: faithful. Characters go straight to espeak-ng voice ``yue``, which reads them in Cantonese.
- ``southwestern``: approximate. Mandarin pinyin with Sichuanese (Chengdu) sound changes: zh/ch/sh -> z/c/s,
  n -> l, r -> z, hu -> fu, -eng/-ing -> -en/-in, ge/ke/he -> go/ko/ho; tones remapped onto the nearest
  Mandarin contour (阴平 55 -> tone 1, 阳平 21 -> tone 3, 上声 53 -> tone 4, 去声 213 -> tone 2).
- ``wu`` and ``min``: crude stand-ins. espeak-ng has no Wu or Min voice, so these are Mandarin pinyin with
  a few typical features of the dialect and its Mandarin accent, read by the Mandarin voice:
  wu (Shanghainese-like): no retroflexes, r -> z, finals monophthongised (an/ai -> e, ian -> i, ao -> o),
  tones 1/2/3/4 -> 53/13/34/34 contours, every second syllable of a phrase toneless (left-dominant word
  sandhi), and a handful of Shanghainese words (我 wu, 你 nong, 他 yi, 是 zi, 的 ge);
  min (Hokkien-like): no retroflexes, no f (f -> hu), no ü (ü -> i), r -> l, -eng/-ing -> -en/-in, citation tones
  at the end of a phrase and the Hokkien tone-sandhi chain before it, and a few Hokkien words
  (我 gua, 你 li, 他 yi, 是 si, 的 e).
  A model that learns "wu" or "min" from this audio learns these stand-ins, not the real dialects.

Digits are read as Chinese numbers (up to four digits as a cardinal number, longer runs digit by digit, as
phone and order numbers are read), Latin letters are spelled, punctuation becomes pauses, and anything else
is dropped with a warning.
"""

from __future__ import annotations

import functools
import random
import re
import subprocess
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence
from xml.sax.saxutils import escape

import numpy as np

from data.audio import ESPEAK_SAMPLE_RATE
from models.taxonomy import DEFAULT_TAXONOMY, UnknownLabelError

ESPEAK_BINARY = "espeak-ng"  # Debian package espeak-ng (1.51 checked)
ESPEAK_TIMEOUT_S = 30.0  # seconds before a hung espeak-ng call is abandoned
PINYIN_VOICE = "cmn-latn-pinyin"  # espeak-ng Mandarin voice that reads tone-numbered pinyin
CANTONESE_VOICE = "yue"  # espeak-ng Cantonese voice that reads Chinese characters

# espeak-ng voice per dialect.
DIALECT_VOICES = {
    "mandarin": PINYIN_VOICE,
    "cantonese": CANTONESE_VOICE,
    "southwestern": PINYIN_VOICE,
    "wu": PINYIN_VOICE,
    "min": PINYIN_VOICE,
}
# How close the synthetic speech is to the real dialect (see the module docstring); for manifests and reports.
DIALECT_FIDELITY = {
    "mandarin": "faithful",
    "cantonese": "faithful",
    "southwestern": "approximate",
    "wu": "crude stand-in",
    "min": "crude stand-in",
}

# espeak-ng voice variants (files in espeak-ng-data/voices/!v) that sound like a plain human voice;
# robotic, whispering, echoing-to-infinity and Klatt-synthesiser variants are left out.
# Variants that rewrite syllable durations (Andrea, anika, antonio: stressLength) are left out too: they
# speak 1.5 times faster and flatten Mandarin tones.
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Annie", "aunty", "belinda", "linda", "steph", "grandma")
MALE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "Mike", "Michael", "Mario", "Denis", "gustave", "robert", "quincy", "travis", "iven",
)  # fmt: skip
SPEAKER_PITCH = (30, 70)  # espeak -p range of a speaker's base pitch (0-99, 50 = voice default)
SPEAKER_SPEED = (165, 225)  # espeak -s range of a speaker's base speed, words per minute (a pinyin
#                            syllable is a word: 175 wpm is about 4 syllables a second with pauses)
SPEAKER_AMPLITUDE = (80, 120)  # espeak -a range of a speaker's base amplitude (0-200, 100 = default)

SPEED_LIMITS = (80, 450)  # espeak -s accepts 80-450 words per minute
SHORT_PAUSE_MS = 180  # pause for , ; : 、 at the reference speed
LONG_PAUSE_MS = 400  # pause for 。 ! ? … at the reference speed
REFERENCE_SPEED = 175  # espeak's default speed, words per minute: pauses scale by REFERENCE_SPEED / speed


class SynthesisError(RuntimeError):
    """espeak-ng failed or produced no sound. The message names the text, dialect, voice and the reason."""


@dataclass(frozen=True)
class Speaker:
    id: str  # e.g. "spk0042"
    gender: str  # "female" | "male"
    variant: str  # espeak voice variant, e.g. "f3", "m5" (a file in espeak-ng-data/voices/!v)
    pitch: int  # espeak -p base, 0-99 (50 = the variant's own pitch)
    speed: int  # espeak -s base, words per minute
    amplitude: int  # espeak -a base, 0-200 (100 = espeak's default loudness)


@dataclass(frozen=True)
class Prosody:
    pitch: int  # espeak -p, 0-99: base pitch of this utterance
    pitch_range: int  # SSML <prosody range>, 0-100 (50 = espeak's normal intonation, 0 = monotone)
    speed: int  # espeak -s, words per minute (one pinyin syllable or Chinese character is a word)
    amplitude: int  # espeak -a, 0-200; the audio is peak-normalised to amplitude / 200 of full scale
    word_gap: int  # espeak -g, extra pause between words (syllables) in units of 10 ms


def split_variants(seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                   splits: Sequence[str] = ("train", "validation", "test")) -> dict[str, dict[str, tuple[str, ...]]]:
    """split -> gender -> voice variants, disjoint across splits (every split gets at least one of each gender), so
    that "speakers unseen" holds for the voice itself and not only for the speaker id: no test speaker uses a
    variant any training speaker uses. Deterministic for ``seed``."""
    out: dict[str, dict[str, tuple[str, ...]]] = {s: {} for s in splits}
    total = sum(fractions)
    for gender, pool in (("female", FEMALE_VARIANTS), ("male", MALE_VARIANTS)):
        order = list(pool)
        random.Random(f"split_variants:{seed}:{gender}").shuffle(order)
        if len(order) < len(splits):
            raise ValueError(f"{len(order)} {gender} variants cannot be split {len(splits)} ways")
        # the held-out splits first (at least one each), the first split (train) takes the rest
        sizes = [max(1, round(len(order) * f / total)) for f in fractions[1:]]
        start = 0
        for split, k in zip(splits[1:], sizes):
            out[split][gender] = tuple(order[start:start + k])
            start += k
        out[splits[0]][gender] = tuple(order[start:])
    return out


def make_speakers(n: int, seed: int, variants: Mapping[str, Sequence[str]] | None = None,
                  first_id: int = 0) -> list[Speaker]:
    """``n`` distinct synthetic speakers, half female, half male; the same ``seed`` gives the same list.
    ``variants``: gender -> the voice variants to draw from (default: all of :data:`FEMALE_VARIANTS` and
    :data:`MALE_VARIANTS`); ``first_id``: number of the first id (``spk<first_id>``)."""
    pools = {"female": tuple((variants or {}).get("female") or FEMALE_VARIANTS),
             "male": tuple((variants or {}).get("male") or MALE_VARIANTS)}
    per_gender = min(len(pools["female"]), len(pools["male"])) * (SPEAKER_PITCH[1] - SPEAKER_PITCH[0] + 1)
    per_gender *= SPEAKER_SPEED[1] - SPEAKER_SPEED[0] + 1
    if not 0 <= n <= per_gender:
        raise ValueError(f"make_speakers: n must be between 0 and {per_gender} distinct speakers, got {n}")
    rng = random.Random(seed)
    genders = ["female" if i % 2 == 0 else "male" for i in range(n)]
    rng.shuffle(genders)
    seen: set[tuple[str, int, int]] = set()
    speakers = []
    for i, gender in enumerate(genders):
        pool = pools[gender]
        while True:  # no two speakers share variant, pitch and speed
            key = (rng.choice(pool), rng.randint(*SPEAKER_PITCH), rng.randint(*SPEAKER_SPEED))
            if key not in seen:
                break
        seen.add(key)
        variant, pitch, speed = key
        speakers.append(Speaker(f"spk{first_id + i:04d}", gender, variant, pitch, speed, rng.randint(*SPEAKER_AMPLITUDE)))
    return speakers


@dataclass(frozen=True)
class EmotionProfile:
    """How an emotion shifts a speaker's voice; each shift is drawn from a normal distribution."""

    pitch: tuple[float, float]  # (mean, sd) added to the speaker's espeak -p
    pitch_range: tuple[float, float]  # (mean, sd) of the SSML range, 0-100 (50 = normal)
    speed: tuple[float, float]  # (mean, sd) factor on the speaker's speed
    amplitude: tuple[float, float]  # (mean, sd) factor on the speaker's amplitude
    word_gap: tuple[float, float]  # (mean, sd) of espeak -g, 10 ms units


# Relative to the speaker; standard deviations are wide enough that neighbouring emotions overlap.
EMOTION_PROFILES = {
    #                         pitch     range     speed         amplitude     word_gap
    "neutral": EmotionProfile((0, 3), (50, 6), (1.0, 0.04), (1.0, 0.06), (0.3, 0.4)),
    "angry": EmotionProfile((12, 5), (80, 10), (1.15, 0.06), (1.4, 0.12), (0.0, 0.3)),
    "anxious": EmotionProfile((8, 4), (62, 8), (1.25, 0.07), (1.1, 0.08), (0.0, 0.2)),
    "sad": EmotionProfile((-10, 4), (25, 8), (0.82, 0.05), (0.7, 0.08), (1.5, 0.7)),
    "happy": EmotionProfile((10, 4), (72, 8), (1.07, 0.05), (1.15, 0.08), (0.2, 0.4)),
}  # fmt: skip


def prosody_for(emotion: str, speaker: Speaker, rng: random.Random) -> Prosody:
    """Prosody of one utterance by ``speaker`` in ``emotion``, with random variation drawn from ``rng``."""
    DEFAULT_TAXONOMY.check("emotion", emotion)
    if emotion not in EMOTION_PROFILES:
        raise UnknownLabelError(
            f"no prosody profile for emotion {emotion!r}; add one to EMOTION_PROFILES in data/synth/tts.py"
        )
    p = EMOTION_PROFILES[emotion]

    def draw(mean_sd: tuple[float, float]) -> float:
        return rng.gauss(*mean_sd)

    return Prosody(
        pitch=_clip(round(speaker.pitch + draw(p.pitch)), 0, 99),
        pitch_range=_clip(round(draw(p.pitch_range)), 0, 100),
        speed=_clip(round(speaker.speed * draw(p.speed)), *SPEED_LIMITS),
        amplitude=_clip(round(speaker.amplitude * draw(p.amplitude)), 1, 200),
        word_gap=_clip(round(draw(p.word_gap)), 0, 20),
    )


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


# -- text -> what espeak reads ---------------------------------------------------------------------

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_TOKEN = re.compile(
    rf"(?P<time>\d{{1,2}}:\d{{2}}(?!\d))"
    rf"|(?P<number>\d+(?:\.\d+)?%?)"
    rf"|(?P<han>[{_HAN}]+)"
    rf"|(?P<latin>[A-Za-z]+)"
    rf"|(?P<long>[。.!?…]+)"
    rf"|(?P<short>[,、;:\-/()\[\]【】《》〈〉—~～|]+)"
    rf"|(?P<space>\s+)"
    rf"|(?P<quote>[\"'“”‘’「」『』`])"
    rf"|(?P<other>.)",
    re.DOTALL,
)
SHORT_PAUSE, LONG_PAUSE = ",", "."  # pause marks in espeak_input's output; synthesize turns them into breaks

_DIGITS = "零一二三四五六七八九"
# How Mandarin speakers spell Latin letters, in tone-numbered pinyin.
_LETTERS_PINYIN = {
    "a": "ei1", "b": "bi4", "c": "xi1", "d": "di4", "e": "yi4", "f": "ai2 fu5", "g": "ji4", "h": "ai2 qi1",
    "i": "ai4", "j": "jie4", "k": "kai4", "l": "ai2 lou5", "m": "ai2 mu5", "n": "en1", "o": "ou1", "p": "pi4",
    "q": "kou4 you1", "r": "a1 er3", "s": "ai2 si1", "t": "ti4", "u": "you1", "v": "wei1", "w": "da2 bu5 liu1",
    "x": "ai2 ke4 si1", "y": "wai4", "z": "zei4",
}  # fmt: skip


def _below_10k(n: int) -> str:
    out: list[str] = []
    pending_zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d == 0:
            pending_zero = pending_zero or bool(out)
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        if d == 2 and unit in ("千", "百"):
            out.append("两" + unit)
        elif d == 1 and unit == "十" and not out:
            out.append("十")
        else:
            out.append(_DIGITS[d] + unit)
    return "".join(out)


def number_to_hanzi(digits: str, mandarin: bool = True) -> str:
    """Chinese reading of a digit string: up to four digits as a cardinal (``"305"`` -> 三百零五), longer
    runs or runs with a leading zero digit by digit (Mandarin reads 1 as 幺 there, as in phone numbers)."""
    if len(digits) <= 4 and not (len(digits) > 1 and digits[0] == "0"):
        n = int(digits)
        return _below_10k(n) if n else "零"
    one = "幺" if mandarin else "一"
    return "".join(one if c == "1" else _DIGITS[int(c)] for c in digits)


def _read_number(token: str, mandarin: bool) -> str:
    percent = token.endswith("%")
    token = token.rstrip("%")
    whole, _, frac = token.partition(".")
    words = number_to_hanzi(whole, mandarin)
    if frac:
        words += "点" + "".join(_DIGITS[int(c)] for c in frac)
    return "百分之" + words if percent else words


def _tokens(text: str, dialect: str) -> list[tuple[str, str]]:
    """Split ``text`` into ("han", chars) | ("latin", letters) | ("pause", mark) units."""
    mandarin = dialect != "cantonese"
    units: list[tuple[str, str]] = []
    dropped: list[str] = []

    def add(kind: str, value: str) -> None:
        if kind == "han" and units and units[-1][0] == "han":
            units[-1] = ("han", units[-1][1] + value)  # keep runs whole: pypinyin reads words in context
        elif kind == "pause" and units and units[-1][0] == "pause":
            units[-1] = ("pause", LONG_PAUSE if LONG_PAUSE in (value, units[-1][1]) else SHORT_PAUSE)
        else:
            units.append((kind, value))

    for m in _TOKEN.finditer(unicodedata.normalize("NFKC", text)):
        kind, value = m.lastgroup, m.group()
        if kind == "time":
            hour, minute = value.split(":")
            add("han", number_to_hanzi(hour.lstrip("0") or "0", mandarin) + "点")
            if minute != "00":
                add("han", ("零" if minute[0] == "0" else "") + number_to_hanzi(minute.lstrip("0"), mandarin) + "分")
        elif kind == "number":
            add("han", _read_number(value, mandarin))
        elif kind in ("han", "latin"):
            add(kind, value)
        elif kind == "long":
            add("pause", LONG_PAUSE)
        elif kind == "short":
            add("pause", SHORT_PAUSE)
        elif kind == "other":
            dropped.append(value)
    if dropped:
        warnings.warn(
            f"espeak_input: dropped characters it cannot read: {''.join(dropped)!r} in {text!r}", stacklevel=3
        )
    while units and units[0][0] == "pause":
        units.pop(0)
    return units


_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c",
             "s", "y", "w")  # fmt: skip
_SYLLABLE = re.compile(r"^[a-zü]+[1-5]$")

# Tone remaps: Mandarin tone -> the espeak (Mandarin) tone whose contour is nearest the dialect's.
_SW_TONES = {1: 1, 2: 3, 3: 4, 4: 2, 5: 5}  # Chengdu 阴平 55, 阳平 21, 上声 53, 去声 213
_WU_TONES = {1: 4, 2: 3, 3: 2, 4: 2, 5: 5}  # Shanghai 阴平 53, 阳去 13, 阴去 34 (上 and 去 merged)
_MIN_CITATION = {1: 1, 2: 2, 3: 4, 4: 3, 5: 5}  # Hokkien 阴平 44, 阳平 24, 上声 53, 去声 21 (phrase-final)
_MIN_SANDHI = {1: 3, 2: 3, 3: 1, 4: 4, 5: 5}  # before the end of a phrase: 44->22, 24->22, 53->44, 21->53
# A few everyday dialect words (Shanghainese 我 ngu, 侬, 伊, 是 zy, 个; Hokkien 我 gua, 你 li, 伊 i, 是 si, 的 e),
# spelled as the nearest pinyin with the espeak tone of their contour; they take no further changes.
_WU_WORDS = {"我": "wu3", "你": "nong3", "侬": "nong3", "他": "yi3", "她": "yi3", "伊": "yi3", "是": "zi3",
             "的": "ge5"}  # fmt: skip
_MIN_WORDS = {"我": "gua4", "你": "li4", "他": "yi1", "她": "yi1", "伊": "yi1", "是": "si3", "的": "e5"}
_MIN_F = {"a": "ua", "ei": "ui", "en": "un", "an": "uan", "ang": "uang", "eng": "ong", "u": "u", "o": "o", "ou": "ou"}


def _split(syllable: str) -> tuple[str, str, int]:
    tone = int(syllable[-1])
    body = syllable[:-1].replace("ü", "v")
    if body in ("m", "n", "ng", "hm", "hng"):  # syllabic nasals (呣, 嗯): no initial
        return "", body, tone
    for ini in _INITIALS:
        if body.startswith(ini) and len(body) > len(ini):
            return ini, body[len(ini) :], tone
    return "", body, tone


def _southwestern(ini: str, fin: str, tone: int) -> str:
    ini = {"zh": "z", "ch": "c", "sh": "s", "n": "l"}.get(ini, ini)
    if ini == "r":
        ini = "z"
    if ini == "h" and fin == "u":
        ini = "f"
    if ini in ("g", "k", "h") and fin == "e":
        fin = "o"
    fin = {"eng": "en", "ing": "in"}.get(fin, fin)
    return f"{ini}{fin}{_SW_TONES[tone]}"


def _wu(ini: str, fin: str, tone: int, position: int) -> str:
    ini = {"zh": "z", "ch": "c", "sh": "s", "r": "z"}.get(ini, ini)
    if ini == "y" and fin == "an":
        fin = "i"
    else:
        fin = {"an": "e", "ai": "e", "uai": "ua", "ian": "i", "uan": "uo", "ao": "o", "iao": "io",
               "eng": "en", "ing": "in"}.get(fin, fin)  # fmt: skip
    return f"{ini}{fin}{_WU_TONES[tone] if position % 2 == 0 else 5}"


def _min(ini: str, fin: str, tone: int, final: bool) -> str:
    ini = {"zh": "z", "ch": "c", "sh": "s", "r": "l"}.get(ini, ini)
    if ini == "f":
        ini, fin = "h", _MIN_F.get(fin, fin)
    if ini in ("j", "q", "x") and fin.startswith("u"):  # pinyin u after j/q/x is ü
        fin = "i" + fin[1:]
    elif ini == "y" and fin.startswith("u"):
        fin = {"u": "i", "ue": "e", "uan": "an", "un": "in"}.get(fin, fin)
    fin = fin.replace("ve", "ie").replace("v", "i")
    fin = {"eng": "en", "ing": "in"}.get(fin, fin)
    return f"{ini}{fin}{(_MIN_CITATION if final else _MIN_SANDHI)[tone]}"


def _pinyin(chars: str, dialect: str) -> list[tuple[str, bool]]:
    """(tone-numbered syllable, True if it is a dialect word that takes no further sound changes) per char."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(
        chars, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=dialect == "mandarin", v_to_u=False
    )
    bad = [s for s in syllables if not _SYLLABLE.match(s)]
    if bad:
        warnings.warn(f"espeak_input: no pinyin for {bad}; dropped", stacklevel=4)
    words = {"wu": _WU_WORDS, "min": _MIN_WORDS}.get(dialect, {})
    if words and len(syllables) == len(chars) and not bad:
        return [(words[c], True) if c in words else (s, False) for c, s in zip(chars, syllables)]
    return [(s, False) for s in syllables if _SYLLABLE.match(s)]


def _dialect_syllables(phrase: list[tuple[str, bool]], dialect: str) -> list[str]:
    """Apply ``dialect``'s sound changes and tone rules to one phrase (syllables between pauses)."""
    out = []
    for i, (syl, fixed) in enumerate(phrase):
        if dialect == "mandarin" or fixed:
            out.append(syl)
            continue
        ini, fin, tone = _split(syl)
        if dialect == "southwestern":
            out.append(_southwestern(ini, fin, tone))
        elif dialect == "wu":
            out.append(_wu(ini, fin, tone, i))
        else:
            out.append(_min(ini, fin, tone, final=i == len(phrase) - 1))
    return out


def espeak_input(text: str, dialect: str) -> tuple[str, str]:
    """(espeak voice, text for it to read) for ``text`` spoken in ``dialect``.

    The text is tone-numbered pinyin syllables (or, for Cantonese, Chinese characters) separated by spaces,
    with ``,`` for a short and ``.`` for a long pause; see the module docstring for what each dialect does.
    """
    DEFAULT_TAXONOMY.check("dialect", dialect)
    if dialect not in DIALECT_VOICES:
        raise UnknownLabelError(
            f"no espeak voice for dialect {dialect!r}; add one to DIALECT_VOICES in data/synth/tts.py"
        )
    units = _tokens(text, dialect)
    words: list[str] = []
    if dialect == "cantonese":
        for kind, value in units:
            words.append(" ".join(value.upper()) if kind == "latin" else value)
        return CANTONESE_VOICE, " ".join(words)
    phrase: list[tuple[str, bool]] = []  # syllables since the last pause: dialect tone rules work on phrases
    for kind, value in units:
        if kind == "han":
            phrase += _pinyin(value, dialect)
            continue
        words += _dialect_syllables(phrase, dialect)
        phrase = []
        if kind == "latin":
            words += [_LETTERS_PINYIN[c] for c in value.lower()]
        else:
            words.append(value)
    words += _dialect_syllables(phrase, dialect)
    return DIALECT_VOICES[dialect], " ".join(words)


# -- espeak-ng --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def espeak_variants() -> frozenset[str]:
    """Names of the voice variants this espeak-ng installation knows (``espeak-ng --voices=variant``)."""
    out = _run([ESPEAK_BINARY, "--voices=variant"], b"", what="listing espeak-ng voice variants").decode()
    names = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("!v/"):
            names.add(fields[4][3:])
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def espeak_voices() -> frozenset[str]:
    """Language names, voice names and file names of the voices espeak-ng knows (``espeak-ng --voices``),
    lower-cased. espeak-ng itself falls back silently to a near match ("no-such" reads as Norwegian)."""
    out = _run([ESPEAK_BINARY, "--voices"], b"", what="listing espeak-ng voices").decode()
    names = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            names.update((fields[1].lower(), fields[3].lower(), fields[4].rsplit("/", 1)[-1].lower()))
    return frozenset(names)


def _run(cmd: list[str], stdin: bytes, what: str) -> bytes:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=ESPEAK_TIMEOUT_S)
    except FileNotFoundError as e:
        raise SynthesisError(f"{what}: {ESPEAK_BINARY} is not installed (apt-get install espeak-ng)") from e
    except subprocess.TimeoutExpired as e:
        raise SynthesisError(f"{what}: espeak-ng took over {ESPEAK_TIMEOUT_S} s") from e
    stderr = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 or stderr.startswith("Error"):
        raise SynthesisError(f"{what}: espeak-ng exited with {proc.returncode}: {stderr or '(no message)'}")
    return proc.stdout


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV bytes (as espeak-ng --stdout writes them) -> (float32 samples in [-1, 1], rate)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError(f"espeak-ng output is not a WAV file (first bytes {data[:12]!r})")
    pos, rate, pcm = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            fmt, channels, rate = (
                int.from_bytes(data[body + a : body + b], "little") for a, b in ((0, 2), (2, 4), (4, 8))
            )
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if (fmt, channels, bits) != (1, 1, 16):
                raise SynthesisError(
                    f"espeak-ng WAV is format {fmt}, {channels} channels, {bits} bits; expected PCM mono 16"
                )
        elif chunk == b"data":
            pcm = data[body : min(len(data), body + size)]  # --stdout streams: the size field is a placeholder
            break
        pos = body + size + (size & 1)
    if rate is None or pcm is None:
        raise SynthesisError("espeak-ng WAV has no fmt or data chunk")
    pcm = pcm[: len(pcm) // 2 * 2]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate


def run_espeak(ssml: str, voice: str, pitch: int, speed: int, amplitude: int, word_gap: int) -> np.ndarray:
    """Raw espeak-ng output for an SSML document: float32 at ESPEAK_SAMPLE_RATE. ``voice`` is a voice with an
    optional variant, e.g. ``"yue+f3"``. Raises SynthesisError."""
    base, _, variant = voice.partition("+")
    if base.lower() not in espeak_voices():
        raise SynthesisError(f"espeak-ng has no voice {base!r} (`espeak-ng --voices` lists the installed ones)")
    if variant and variant not in espeak_variants():
        raise SynthesisError(f"espeak-ng has no voice variant {variant!r} (`espeak-ng --voices=variant` lists them)")
    cmd = [ESPEAK_BINARY, "--stdout", "--stdin", "-m", "-v", voice, "-p", str(pitch), "-s", str(speed),
           "-a", str(amplitude), "-g", str(word_gap)]  # fmt: skip
    audio, rate = parse_wav(_run(cmd, ssml.encode("utf-8"), what=f"voice {voice!r}"))
    if rate != ESPEAK_SAMPLE_RATE:
        raise SynthesisError(
            f"espeak-ng wrote {rate} Hz; data/audio.py expects ESPEAK_SAMPLE_RATE={ESPEAK_SAMPLE_RATE}"
        )
    return audio


def to_ssml(spoken: str, prosody: Prosody) -> str:
    """SSML for espeak_input's text: pause marks become breaks scaled to the speed; pitch range applied."""
    scale = REFERENCE_SPEED / max(prosody.speed, 1)
    breaks = {
        SHORT_PAUSE: f'<break time="{round(SHORT_PAUSE_MS * scale)}ms"/>',
        LONG_PAUSE: f'<break time="{round(LONG_PAUSE_MS * scale)}ms"/>',
    }
    body = " ".join(breaks.get(w, escape(w)) for w in spoken.split())
    return f'<speak><prosody range="{prosody.pitch_range}">{body}</prosody></speak>'


SILENCE_PEAK = 1e-3  # full scale: espeak output quieter than this everywhere counts as empty


def synthesize(text: str, dialect: str, speaker: Speaker, prosody: Prosody) -> np.ndarray:
    """Speech for ``text`` in ``dialect`` by ``speaker`` with ``prosody``: float32 mono at ESPEAK_SAMPLE_RATE,
    peak-normalised to ``prosody.amplitude / 200`` of full scale. Raises SynthesisError on failure."""
    voice, spoken = espeak_input(text, dialect)
    where = f"text {text!r} (dialect {dialect}, voice {voice}+{speaker.variant})"
    if not spoken.replace(SHORT_PAUSE, "").replace(LONG_PAUSE, "").strip():
        raise SynthesisError(f"{where}: nothing to speak after normalisation")
    try:
        audio = run_espeak(
            to_ssml(spoken, prosody), f"{voice}+{speaker.variant}",
            prosody.pitch, prosody.speed, prosody.amplitude, prosody.word_gap,
        )  # fmt: skip
    except SynthesisError as e:
        raise SynthesisError(f"{where}: {e}") from e
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        raise SynthesisError(f"{where}: espeak-ng produced no sound ({audio.size} samples, peak {peak:.2g})")
    return (audio * (prosody.amplitude / 200.0 / peak)).astype(np.float32)
