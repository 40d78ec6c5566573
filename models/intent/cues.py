"""Strong complaint cues: words that make a call a complaint whatever the intent model says.

A caller who says 投诉, 12315 or 找你们领导 wants a complaint ticket even when the rest of the call reads
like a question. The cue list covers Mandarin, the spoken digit forms of hotline numbers (幺二三幺五), and
Cantonese / Wu / Min variants in simplified and traditional characters (recognisers write Cantonese in
traditional characters). A cue right after a negation (不是 / 不想 / 唔使 ...) does not fire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

NEGATION_WINDOW = 3  # characters before a cue searched for a negation
NEGATIONS = ("不是", "不想", "不用", "不要", "没有", "没想", "无需", "不必", "不会", "唔使", "唔想", "唔系", "唔係", "冇")

# Digit characters as speech recognisers write them: Arabic, Chinese numerals, 幺 for 1 on the phone.
_D = {"1": "[1一幺壹]", "2": "[2二两贰]", "3": "[3三叁]", "4": "[4四肆]", "5": "[5五伍]"}


_ANY_DIGIT = "[0-9０-９零〇一二三四五六七八九幺两壹贰叁肆伍陆柒捌玖]"


def _spoken(number: str) -> str:
    """A regex matching ``number`` in Arabic or spoken Chinese digits, not inside a longer digit string
    (a phone number or order number that happens to contain 12315 is not a cue)."""
    return f"(?<!{_ANY_DIGIT})" + "".join(_D[d] for d in number) + f"(?!{_ANY_DIGIT})"


@dataclass(frozen=True)
class Cue:
    name: str  # canonical cue, shown as evidence "cue:<name>"
    strength: float  # probability in [0, 1] that a call with this cue is a complaint
    patterns: tuple[str, ...]  # regexes of the cue's surface forms (dialect and script variants)
    negatable: bool = True  # False for cues that already contain a negation (不满意)


@dataclass(frozen=True)
class CueMatch:
    cue: str  # canonical cue name
    strength: float  # the cue's strength
    start: int  # character offset of the match in the text
    end: int  # end offset (exclusive)
    surface: str  # the matched text

    @property
    def evidence(self) -> str:
        return f"cue:{self.cue}"


STRONG_CUES: tuple[Cue, ...] = (
    Cue("投诉", 0.9, ("投诉", "投訴", "申诉", "申訴")),
    Cue("12315", 0.95, (_spoken("12315"),)),
    Cue("12345", 0.8, (_spoken("12345"),)),
    Cue("315", 0.75, (_spoken("315") + "晚会", "打" + _spoken("315"))),
    Cue("不满意", 0.8, ("不满意", "不滿意", "唔满意", "唔滿意", "勿满意", "弗满意", "无满意", "無滿意", "非常不满", "极度不满"), False),
    Cue("曝光", 0.85, ("曝光",)),
    Cue("找你们领导", 0.85, (
        "找你们领导", "找你们经理", "找你们主管", "叫你们领导", "让你们领导", "找领导", "找上级",
        "搵你哋领导", "搵你哋領導", "搵你哋经理", "搵你哋經理", "叫你哋经理", "叫你哋經理", "揾你哋经理", "寻侬拉领导",
    )),
    Cue("消协", 0.9, ("消协", "消協", "消费者协会", "消費者協會", "消委会", "消委會")),
    Cue("媒体", 0.7, ("媒体", "媒體", "记者", "記者", "电视台", "電視台")),
    Cue("退钱", 0.6, ("退钱", "退錢", "还钱", "還錢", "赔钱", "賠錢", "赔偿", "賠償")),
    Cue("太差劲", 0.75, ("太差劲", "太差勁", "差劲", "差勁", "太差了", "好差劲", "好差勁", "垃圾服务", "垃圾服務", "烂透", "爛透")),
    Cue("举报", 0.85, ("举报", "舉報")),
    Cue("工信部", 0.9, ("工信部", "市场监管", "市場監管", "工商局")),
    Cue("起诉", 0.85, ("起诉", "起訴", "告你们", "告你哋", "律师函", "律師函", "法院")),
    Cue("欺骗", 0.7, ("骗子", "騙子", "欺骗", "欺騙", "忽悠", "呃人")),
    Cue("维权", 0.8, ("维权", "維權")),
)

_NEG_RE = re.compile("|".join(map(re.escape, NEGATIONS)))


def _compile(cues: Iterable[Cue]) -> list[tuple[Cue, re.Pattern]]:
    return [(c, re.compile("|".join(f"(?:{p})" for p in c.patterns))) for c in cues]


_COMPILED = _compile(STRONG_CUES)


def find_cues(text: str, cues: Iterable[Cue] | None = None) -> tuple[CueMatch, ...]:
    """The strong cues that fire in ``text``, in text order (a cue after a negation does not fire)."""
    compiled = _COMPILED if cues is None else _compile(cues)
    found: list[CueMatch] = []
    for cue, rx in compiled:
        for m in rx.finditer(text):
            before = text[max(0, m.start() - NEGATION_WINDOW) : m.start()]
            if cue.negatable and _NEG_RE.search(before):
                continue
            found.append(CueMatch(cue.name, cue.strength, m.start(), m.end(), m.group(0)))
    return tuple(sorted(found, key=lambda c: (c.start, c.end)))


@dataclass(frozen=True)
class ComplaintDecision:
    is_complaint: bool  # the intent is a complaint intent OR a strong cue fired
    confidence: float  # probability that ``is_complaint`` is right, in [0, 1]
    probability: float  # probability that the call is a complaint (model and cues combined)
    evidence: tuple[str, ...]  # "intent:<name>" when the intent is a complaint, then "cue:<name>" per fired cue


def decide_complaint(
    intent: str,
    intent_probs: Mapping[str, float],
    complaint_intents: Iterable[str],
    cues: Iterable[CueMatch],
) -> ComplaintDecision:
    """Combine the intent model and the cues into one complaint decision.

    The probability of a complaint is a noisy-OR of the model's complaint mass (the summed probability of
    the complaint intents) and the strongest cue: either source alone can make the call a complaint.
    """
    complaint_intents = set(complaint_intents)
    cues = tuple(cues)
    p_model = float(sum(p for name, p in intent_probs.items() if name in complaint_intents))
    p_model = min(max(p_model, 0.0), 1.0)
    p_cue = max((c.strength for c in cues), default=0.0)
    probability = 1.0 - (1.0 - p_model) * (1.0 - p_cue)
    intent_is_complaint = intent in complaint_intents
    is_complaint = intent_is_complaint or bool(cues)
    evidence: list[str] = [f"intent:{intent}"] if intent_is_complaint else []
    for c in cues:
        if c.evidence not in evidence:
            evidence.append(c.evidence)
    confidence = probability if is_complaint else 1.0 - probability
    return ComplaintDecision(is_complaint, float(confidence), float(probability), tuple(evidence))
