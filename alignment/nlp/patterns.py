"""Regular expressions of the report grammar: sentence boundaries, headers, sizes, clock positions,
distances, quadrants, laterality and assessment categories.

The splitter runs its patterns over the whole report; the others run over one sentence at a time (C
speed, tried only where a cheap candidate search says they can start), which costs far less than scanning
tokens in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .vocabulary import FIELD_LABELS, SECTIONS

_NUM = r"\d+(?:\.\d+)?"
_UNIT = r"(mm|cm|毫米|厘米)"
_BY = r"\s*(?:[x×X*✕]|by)\s*"

# Sizes: "1.2 x 0.8 x 0.9 cm", "1.2 cm x 0.8 cm", "12×8mm", "12 mm", "1.2cm" (the last unit applies to
# numbers written without one).
SIZE = re.compile(
    rf"({_NUM})\s*{_UNIT}?{_BY}({_NUM})\s*{_UNIT}?(?:{_BY}({_NUM}))?\s*{_UNIT}(?![a-zA-Z])"
    rf"|({_NUM})\s*{_UNIT}(?![a-zA-Z])"
)

VOLUME = re.compile(rf"({_NUM})\s*(ml|cc|毫升)(?![a-z])")
# What an organ measurement measures, by the words of its stretch (checked in this order).
MEASURE_KIND = (
    ("volume", re.compile(r"volume|体积|容积|残余尿|residual")),
    ("thickness", re.compile(r"thick|wall|stripe|厚|壁")),
    ("length", re.compile(r"span|length|long|斜径|长径|长约|craniocaudal|cc\b")),
    ("diameter", re.compile(r"diameter|caliber|calibre|内径|径|宽")),
)
CLAUSE_STOP = re.compile(r"[,，;；。]|\sand\s|\d")
# Words that say an organ is measured ("The right kidney measures 11.2 cm", "右叶大小约...").
MEASURE_CUE = re.compile(
    r"measur|\bspan|length|\blong\b|diameter|thick|volume|\bsize|\bap\b|\btrv\b|dimension|caliber|"
    r"大小|厚|径|长约|宽约|体积|容积|残余尿"
)
# A lobe word: the organ comes from the report when the sentence does not name it ("Right lobe: ...").
LOBE = re.compile(r"\blobes?\b|[左右]叶")
# What a bare measurement under an organ label may hold besides its numbers ("0.4 cm AP").
BARE_MEASUREMENT = re.compile(
    r"(?i)(?:[\s\d.,:;()x×X*✕]|mm|cm|ml|cc|ap|trv|tr|sag|by|and|volume|length|thickness|measures|measuring|"
    r"approximately|approx|about|大小约|厚约|约|毫米|厘米|，|。)*"
)

DISTANCE = re.compile(
    rf"({_NUM})\s*(cm|mm)\s*(?:fn|ftn|fnp|from\s+(?:the\s+)?(?:nipple|areola)|from\s+n\b)"
    rf"|(?:fn|ftn)\s*({_NUM})\s*(cm|mm)"
    rf"|距(?:离)?乳头(?:距离)?(?:约|大约|为|约为)?\s*({_NUM})\s*{_UNIT}"
)

_H = r"(1[0-2]|0?[1-9])"
CLOCK = re.compile(
    rf"{_H}(?::([0-5]\d))?(?:\s*(?:-|–|to|~)\s*{_H}(?::([0-5]\d))?)?\s*(?:o['’`]?\s?clock|oclock)"
    rf"|{_H}:([0-5]\d)(?![\d:])(?!\s*(?:am|pm|a\.m|p\.m|h\b|hrs|hours))"
    # "3点" but not "点状/点片状" (punctate); after a range ("12-1点片状低回声区") 点 is always the clock
    rf"|{_H}(?:\s*[-~～至到]\s*{_H}\s*点|\s*点(?!状|片|线))(?:钟)?"
)

QUADRANT = re.compile(
    r"(upper|lower)[\s-]?(outer|inner)(?:\s+quadrant)?\b"
    r"|(uoq|uiq|loq|liq)\b"
    r"|(retroareolar|subareolar|periareolar|retro-areolar|sub-areolar)\b"
    r"|central\s+(?:quadrant|region|breast|portion)\b"
    r"|(?!)()"
    r"|(?:偏)?(外上|内上|外下|内下)(?:象限|相限)?"
    r"|(?:偏)?([上下内外])侧?(?:象限|相限)"
    r"|乳晕(?:区|下方|后方|下|后|旁|周围)?|中央区"
)

_QUAD_EN = {
    "upper outer": "upper_outer",
    "upper inner": "upper_inner",
    "lower outer": "lower_outer",
    "lower inner": "lower_inner",
    "uoq": "upper_outer",
    "uiq": "upper_inner",
    "loq": "lower_outer",
    "liq": "lower_inner",
}
_QUAD_ZH = {
    "外上": "upper_outer",
    "内上": "upper_inner",
    "外下": "lower_outer",
    "内下": "lower_inner",
    "上": "upper",
    "下": "lower",
    "内": "inner",
    "外": "outer",
}


def quadrant_code(m: re.Match[str]) -> str:
    """Normalised quadrant code of a ``QUADRANT`` match (``upper_outer`` ... ``central``/``retroareolar``;
    half-breast words give ``upper``/``lower``/``inner``/``outer``)."""
    if m.group(1):
        return _QUAD_EN[f"{m.group(1).lower()} {m.group(2).lower()}"]
    if m.group(3):
        return _QUAD_EN[m.group(3).lower()]
    if m.group(4):
        return "retroareolar"
    if m.group(5):
        return m.group(5).lower()
    if m.group(6):
        return _QUAD_ZH[m.group(6)]
    if m.group(7):
        return _QUAD_ZH[m.group(7)]
    text = m.group(0)
    return "retroareolar" if text.startswith("乳晕") else "central"


LATERALITY = re.compile(
    r"(left|lt\.?)(?![\w-])|(right|rt\.?)(?![\w-])|(bilateral(?:ly)?|bilat)\b"
    r"|both\s+(?=(?:thyroid\s+)?(?:lobes|breasts|kidneys|sides|axillae|axillas|ovaries|testes|testicles|adnexa))"
    r"|(?<!左)(左)(?!右)|(?<!左)(右)|(双侧|两侧|双)"
)


def laterality_code(m: re.Match[str]) -> str:
    """``left``/``right``/``bilateral`` of a ``LATERALITY`` match."""
    if m.group(1) or m.group(4):
        return "left"
    if m.group(2) or m.group(5):
        return "right"
    return "bilateral"


_ROMAN = r"vi|iv|v|iii|ii|i|Ⅵ|Ⅳ|Ⅴ|Ⅲ|Ⅱ|Ⅰ"
BIRADS = re.compile(
    rf"(?:bi-?\s?rads|i-rads|br(?=\s?[0-6]\b))(?:[\s-]*us)?\s*(?:分级|分类|类别|category|cat\.?|assessment)?"
    rf"\s*[:：]?\s*(?:为|是)?\s*(?<![\d])([0-6]|{_ROMAN})(?!\d|\.\d)\s*([abc](?![a-z]))?"
    rf"(?:\s*(?:类|级))?(?:\s*[-~～至/]\s*([0-6])\s*([abc](?![a-z]))?)?"
)
TIRADS = re.compile(
    r"(?:(?:acr\s*)?(?:c-)?ti-?\s?rads)\s*(?:level|category|classification|分级|分类|类别)?\s*[:：]?\s*"
    r"(?:为|是)?\s*(?:tr\s*-?\s*)?([1-5])(?!\d|\.\d)\s*([abc](?![a-z]))?"
    # a bare level ends at anything but a letter or digit: "TR4", "TR2类" (CJK counts as a word character)
    r"|tr\s*-?\s*([1-5])(?![0-9a-z])"
)
POINTS_AFTER = re.compile(r"\s*[,(（:：-]?\s*(?:total\s*(?:of\s*)?)?(\d{1,2})\s*(?:points?|pts?\b|分)")
POINTS_TOTAL = re.compile(
    r"(?:total\s+(?:ti-?rads\s+)?points?|points?\s+total|ti-?rads\s+(?:total\s+)?(?:points?|score)|"
    r"total\s+score|总分|总评分)\s*(?:[:：=]|of|is)?\s*(\d{1,2})\b"
    r"|(?:total|sum)\s*(?:[:：=]|of|is)?\s*(\d{1,2})\s*points?"
)
FIELD_POINTS = re.compile(r"(?i)\((\d)\s*(?:points?|pts?)\)|（(\d)\s*分）|\((\d)\s*分\)")

_SECTION_EN = "|".join(sorted((re.escape(k) for k in SECTIONS if k.isascii()), key=len, reverse=True))
_SECTION_ZH = "|".join(sorted((re.escape(k) for k in SECTIONS if not k.isascii()), key=len, reverse=True))
_FIELDS = "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in FIELD_LABELS)
_ORGAN_HEAD = (
    r"(?:(?:right|left|bilateral)\s+(?:thyroid\s+)?(?:lobe|breast|axilla|kidney|ovary|testis|testicle|"
    r"adnexa|neck|parotid|submandibular|lobe\s+of\s+the\s+thyroid)|isthmus|thyroid(?:\s+gland)?|"
    r"(?:nodule|lesion|mass|cyst)\s*(?:#\s*)?\d{1,2}|liver|gallbladder|pancreas|spleen|kidneys?|"
    r"bladder|urinary\s+bladder|uterus|ovaries|endometrium|endometrial\s+stripe|common\s+bile\s+duct|"
    r"aorta|prostate|right\s+breast|left\s+breast)"
)
# Headers that stand alone as a sentence (split before and after) and field labels that only start one.
HEADER = re.compile(
    rf"(?i)(?<![\w-])(?:(?P<section>{_SECTION_EN})|(?P<organ>{_ORGAN_HEAD}))\s*[:：]"
    rf"|(?P<caps>(?-i:\b[A-Z]{{3,}}(?:\s+[A-Z]{{2,}}){{0,3}}))\s*:(?!\d)"
    rf"|(?P<zsection>{_SECTION_ZH})\s*[:：]"
    rf"|(?P<zorgan>(?:甲状腺)?[左右双]侧?(?:乳腺?|乳房|叶|腋窝|腋下|肾|卵巢|附件区?|颈部|甲状腺|睾丸|叶甲状腺)[：:])"
    rf"|(?P<field>(?<![\w-])(?:{_FIELDS}))\s*[:：]"
)
_ORGAN_HEAD_WORDS = frozenset(re.findall(r"[a-z]+", _ORGAN_HEAD))
_ASCII_WORD = re.compile(r"[A-Za-z]+")
_CAPS_HEAD = r"(?P<caps>(?-i:\b[A-Z]{3,}(?:\s+[A-Z]{2,}){0,3}))\s*:(?!\d)"


def _first_word(label: str) -> str:
    return _ASCII_WORD.match(label).group(0) if label[:1].isascii() and label[:1].isalpha() else ""  # type: ignore[union-attr]


def _header_for(word: str) -> re.Pattern[str]:
    """``HEADER`` reduced to the alternatives that can match where the letters-only word ``word``
    (lower case) starts, in the same order: it finds the same match there, trying far fewer."""
    sections = [k for k in sorted((k for k in SECTIONS if k.isascii()), key=len, reverse=True) if _first_word(k) == word]
    fields = [k for k in FIELD_LABELS if _first_word(k) == word]
    parts = []
    heads = []
    if sections:
        heads.append("(?P<section>" + "|".join(re.escape(k) for k in sections) + ")")
    if word in _ORGAN_HEAD_WORDS:
        heads.append(f"(?P<organ>{_ORGAN_HEAD})")
    if heads:
        parts.append(r"(?<![\w-])(?:" + "|".join(heads) + r")\s*[:：]")
    parts.append(_CAPS_HEAD)
    if fields:
        parts.append(
            r"(?P<field>(?<![\w-])(?:" + "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in fields) + r"))\s*[:：]"
        )
    return re.compile("(?i)" + "|".join(parts))


_HEADER_BY_WORD: dict[str, re.Pattern[str]] = {
    w: _header_for(w) for w in {_first_word(k) for k in (*SECTIONS, *FIELD_LABELS)} | _ORGAN_HEAD_WORDS if w
}
_CAPS_ONLY = re.compile("(?i)" + _CAPS_HEAD)


def header_match(text: str, start: int, end: int) -> re.Match[str] | None:
    """The first ``HEADER`` match in ``text[start:end]`` (as ``HEADER_SCAN.finditer`` would find it first).

    In ASCII text a header starts at a word from a short list or at a run of capitals; there only the
    alternatives of ``HEADER`` that can start with that word are tried (``HEADER`` itself is a long
    case-insensitive alternation)."""
    if not text[start:end].isascii():
        return next(HEADER_SCAN.finditer(text, start, end), None)
    for w in _ASCII_WORD.finditer(text, start, end):
        word = w.group(0)
        pattern = _HEADER_BY_WORD.get(word.lower())
        if pattern is None:
            if len(word) < 3 or not word.isupper():
                continue
            pattern = _CAPS_ONLY
        i = w.start()
        if i and (text[i - 1].isalnum() or text[i - 1] == "_"):
            continue  # not a word start ("2points")
        m = pattern.match(text, i, end)
        if m is not None:
            return m
    return None


# Numbered list items: "1、", "2.", "3)", "(4)", "（5）" (one or two digits).  Found from where the number
# ends: its terminator after a digit (at C speed: decimals and sentence-final periods fail inside the
# engine); ``list_item_starts`` walks back to the item's start and checks where an item may start.
_LIST_ITEM_END = re.compile(r"[、．.](?<=\d[、．.])(?!\d)|[)）](?<=\d[)）])")
_ITEM_BEFORE = frozenset(" \t\n\r。；;.,，:：!?！？")
_DOT_ITEM_BEFORE = frozenset("。；;.!?！？\n")


def _char_before(text: str, i: int) -> str:
    """The character before ``i`` after skipping spaces and tabs back from it ("" at the start)."""
    while i > 0 and (text[i - 1] == " " or text[i - 1] == "\t"):
        i -= 1
    return text[i - 1] if i else ""


def _inside_brackets(text: str, i: int) -> bool:
    """Whether a bracket opened on the line before ``i`` is still open there."""
    line = max(text.rfind("\n", 0, i), 0)
    opened = max(text.rfind("(", line, i), text.rfind("（", line, i))
    return opened >= 0 and opened > max(text.rfind(")", line, i), text.rfind("）", line, i))


def _section_before(text: str, i: int) -> bool:
    """Whether the words before the colon before ``i`` name a section ("IMPRESSION: 1. ...")."""
    colon = text.rfind(":", max(0, i - 40), i)
    colon = max(colon, text.rfind("：", max(0, i - 40), i))
    head = text[max(0, colon - 24) : colon].lower().split()
    return any(" ".join(head[k:]) in SECTIONS for k in range(len(head)))


def list_item_starts(text: str) -> list[int]:
    """Start offsets of numbered list items in ``text``: "1、", "2.", "3)", "(4)", "（5）"."""
    out = []
    n = len(text)
    for m in _LIST_ITEM_END.finditer(text):
        t = m.start()
        last = text[t]
        i = t - 1  # the item's last digit; an item number has at most two
        if i > 0 and text[i - 1].isdecimal():
            i -= 1
        if last in ")）" and i > 0 and text[i - 1] in "(（":
            # "(2) Left breast" after a sentence end or a colon, not the points of a field
            # ("Composition: solid (2).") or any other number in brackets inside a sentence
            i -= 1
            before = _char_before(text, i)
            ok = not before or before in _DOT_ITEM_BEFORE or before in ":："
        elif t + 1 < n and text[t + 1].isdecimal():
            continue  # "1.2", "3、4"
        elif last in ")）" and _inside_brackets(text, i):
            continue  # "(BI-RADS 3).", "(TR 4)": a number closing a bracket is no item
        elif last in "、．":
            prev = text[i - 1] if i else ""
            ok = not prev or not (prev.isdigit() or prev == ".")
        elif last == ".":
            # "2. Left breast" after a sentence end, not "BI-RADS 2." or "points: 4."
            before = _char_before(text, i)
            ok = not before or before in _DOT_ITEM_BEFORE or (
                # "IMPRESSION: 1. Right thyroid nodule": a list's first item right after a section header
                before in ":：" and text[i:t] == "1" and _section_before(text, i)
            )
        else:
            prev = text[i - 1] if i else ""
            ok = not prev or prev in _ITEM_BEFORE
        if ok:
            out.append(i)
    return out


def lowered(text: str) -> str:
    """``text.lower()`` with the same length (offsets must stay valid)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


# Sentence ends: runs of 。！？；;!?, line breaks, and a period before a capital, digit or CJK character or
# at the end.  One leading character class, so the engine skips ahead to candidates by itself.
SENTENCE_END = re.compile(
    r"[。！？；;!?\n.](?:(?<=[。！？；;!?])[。！？；;!?]*|(?<=\n)\n*"
    r"|(?<=\.)(?=\s*$|\s+[\"'(\[]?[A-Z0-9\u4e00-\u9fff]|[\u4e00-\u9fff]))"
)
ABBREVIATIONS = frozenset(
    {
        "approx",
        "e.g",
        "i.e",
        "dr",
        "vs",
        "fig",
        "mr",
        "mrs",
        "ms",
        "no",
        "st",
        "incl",
        "cf",
        "pt",
        "hx",
        "dx",
        "sx",
        "est",
        "max",
        "min",
        "ca",
        "resp",
        "lt",
        "rt",
        "u.s",
        "eg",
        "ie",
        "appr",
        "diam",
        "ant",
        "post",
        "sup",
        "inf",
        "lat",
        "med",
        "vol",
    }
)
# Abbreviations by their last two characters: the split looks at those two first.
ABBREVIATION_TAILS: dict[str, tuple[str, ...]] = {}
for _abbreviation in sorted(ABBREVIATIONS):
    ABBREVIATION_TAILS[_abbreviation[-2:]] = (*ABBREVIATION_TAILS.get(_abbreviation[-2:], ()), _abbreviation)


def abbreviation_before(text: str, i: int) -> bool:
    """Whether the period at ``i`` ends an abbreviation ("approx.", "e.g."): the whole run of letters and
    periods before it is one."""
    for abbreviation in ABBREVIATION_TAILS.get(text[i - 2 : i].lower(), ()) if i > 1 else ():
        j = i - len(abbreviation)
        if j >= 0 and text[j:i].lower() == abbreviation and not (j and (text[j - 1].isalpha() or text[j - 1] == ".")):
            return True
    return False

# Separators between two lesions in one sentence ("a cyst at 2 o'clock and a nodule at 10 o'clock").
LESION_SEPARATOR = re.compile(
    r"(?i)[,;，；、]|\s(?:and|or|without|as\s+well\s+as|plus|also|while)\s|及|和|与|以及|另|或|并"
)
# A side named right before a BI-RADS category, after the lesion of a Chinese sentence ("双乳良性钙化，右乳
# BI-RADS2类", "...结节，BI-RADS2类：右乳，BI-RADS1类"): the category assesses that breast.  Searched with
# ``endpos`` at the category.
SIDE_BEFORE_CATEGORY = re.compile(r"[左右双]侧?(?:乳腺|乳房|乳)?\s*[，,：:]?\s*$")
# Chinese coordinated locations of one lesion phrase ("左乳11点、右乳10点低回声", "右乳外象限及内上象限结节",
# "左侧乳腺5-7点及5点占位"): the coordinator, and what may stand between a location and the coordinator.
LOCATION_COORDINATOR = re.compile(r"以及|及|和|与|、")
LOCATION_FILLER = re.compile(r"(?:乳腺|乳房|乳|侧|方向|处|区|部|[内外上下]侧|[内外上下]方)*")
# A new lesion is being introduced ("... and a 1.0 cm hemangioma"), not an interpretation.
NEW_LESION = re.compile(r"(?i)\band\s+(?:a|an|another|\d)\b|;\s*(?:a|an)\b|另|及|和")
# Words that introduce an interpretation of the lesion just described ("mass ..., likely fibroadenoma"):
# a lesion word after them names the same lesion, not a new one.
INTERPRETATION = re.compile(
    r"(?i)\b(?:consistent\s+with|compatible\s+with|in\s+keeping\s+with|likely|probably|possibly|possible|"
    r"suggestive\s+of|suspicious\s+(?:for|of)|suspected|represent\w*|concerning\s+for|favou?r\w*|may\s+be|"
    r"could\s+be|worrisome\s+for|typical\s+of|characteristic\s+of|cannot\s+exclude|rule\s+out)\b"
    r"|考虑|符合|提示|可能|倾向|疑|诊断为|呈|除外|排除|待排"
)
# Clause breaks that end a negation/uncertainty scope.  English commas do not ("no cysts, masses or
# nodules"), but a coordinated new lesion does ("no cyst ... and a 1 cm nodule").
CLAUSE_EN = re.compile(
    r"(?i);|:|\s(?:and|,)\s+(?=(?:a|an|another|there|the|one|two|several|multiple|\d)\b)"
    r"|,\s+(?=(?:a|an|another|there|the)\b)"
)
CLAUSE_ZH = re.compile(r"[，,；;：:。]")



class Scanner:
    """``pattern.finditer`` for a pattern whose matches can only start where ``first`` matches.

    Python's regex engine skips ahead quickly only for patterns that start with a literal or a character
    class; ours start with groups and alternations, so ``finditer`` tries the whole pattern at every
    position.  ``first`` (one character, optionally followed by a lookahead, so that its own matches
    never overlap a candidate) finds the candidate starts at C speed and the pattern is tried only
    there.  As long as every match of ``pattern`` starts where ``first`` matches, the matches are exactly
    those of ``pattern.finditer`` (lookbehinds and ``\\b`` still see the text before a candidate).
    """

    __slots__ = ("first", "pattern")

    def __init__(self, pattern: re.Pattern[str], first: str) -> None:
        self.pattern = pattern
        self.first = re.compile(first)

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[re.Match[str]]:
        if endpos is None:
            endpos = len(text)
        search = self.first.search
        match = self.pattern.match
        while True:
            c = search(text, pos, endpos)
            if c is None:
                return
            i = c.start()
            m = match(text, i, endpos)
            if m is None:
                pos = i + 1
            else:
                yield m
                # the next candidate is searched from the match's end: none inside it is tried
                pos = m.end() if m.end() > i else i + 1


# Candidate starts of each pattern (lower-cased text): one character (so the engine can skip to it) and
# a lookahead that every match of the pattern satisfies there, so that candidates are few.
SIZE_SCAN = Scanner(SIZE, r"\d(?=\d*(?:\.\d+)?\s*(?:mm|cm|毫米|厘米|[x×X*✕]|by))")
DISTANCE_SCAN = Scanner(
    DISTANCE, r"[\df距](?:(?<=\d)(?=\d*(?:\.\d+)?\s*[cm]m)|(?<=f)(?=t?n)|(?<=距))"
)
CLOCK_SCAN = Scanner(CLOCK, r"\d(?=[\d:\s\-–t~o点～至到])")
QUADRANT_SCAN = Scanner(
    QUADRANT,
    r"u(?=pper|oq|iq)|l(?=ower|oq|iq)|r(?=etro)|s(?=ub)|p(?=eri)|c(?=entral)|偏|外|内|上|下|乳(?=晕)|中(?=央区)",
)
LATERALITY_SCAN = Scanner(LATERALITY, r"l(?=eft|t)|r(?=ight|t)|b(?=ilat|oth)|左|右|双|两(?=侧)")
BIRADS_SCAN = Scanner(BIRADS, r"b(?=i-?\s?rads|r\s?[0-6])|i(?=-rads)")
TIRADS_SCAN = Scanner(TIRADS, r"a(?=cr)|c(?=-)|t(?=i-?\s?rads|r\s*-?\s*[1-5])")
POINTS_TOTAL_SCAN = Scanner(POINTS_TOTAL, r"t(?=otal|i-?rads)|p(?=oint)|s(?=um)|总")
# English headers start a word (section, organ and field names after ``(?<![\w-])``, capitals after
# ``\b``); Chinese ones start with a section name's or an organ header's first character.
HEADER_SCAN = Scanner(
    HEADER,
    r"(?i:(?<!\w)[a-z])|["
    + "".join(sorted({k[0] for k in SECTIONS if not k.isascii()}))
    + "甲左右双]",
)

ROMAN_VALUES = {
    "I": 1,
    "II": 2,
    "III": 3,
    "IV": 4,
    "V": 5,
    "VI": 6,
    "Ⅰ": 1,
    "Ⅱ": 2,
    "Ⅲ": 3,
    "Ⅳ": 4,
    "Ⅴ": 5,
    "Ⅵ": 6,
}
CJK = re.compile(r"[\u4e00-\u9fff]")


def detect_language(text: str) -> str:
    """``zh`` when CJK characters make up a noticeable share of the text, else ``en``."""
    cjk = len(CJK.findall(text))
    if cjk == 0:
        return "en"
    visible = sum(1 for ch in text if not ch.isspace())
    return "zh" if cjk >= 0.15 * visible or cjk >= 8 else "en"
