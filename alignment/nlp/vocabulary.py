"""Word lists of the parser that are not lexicon values: lesion kinds, site words, context triggers,
section headers and structured-field labels.

Lexicon values (what an annotator tags) come from ``annotation/lexicons/*.json``; the lists here are the
report grammar around them, so they live with the code that interprets them.
"""

from __future__ import annotations

# Lesion kinds: normalised kind -> (English phrases, Chinese phrases).  Named benign tumours count as
# "mass" because the alignment only needs to know that a solid lesion is described.
LESIONS: dict[str, tuple[list[str], list[str]]] = {
    "nodule": (["nodule", "nodules", "nodular lesion", "nodularity"], ["结节", "结节灶", "小结节"]),
    "cyst": (["cyst", "cysts", "microcyst", "microcysts", "cystic lesion", "cystic lesions"],
             ["囊肿", "囊性病灶", "小囊肿"]),
    "mass": (["mass", "masses", "tumor", "tumour", "tumors", "fibroadenoma", "fibroadenomas", "lipoma",
              "hemangioma", "haemangioma", "adenoma", "papilloma", "carcinoma", "neoplasm", "fibroid",
              "fibroids", "leiomyoma", "myoma", "angiomyolipoma", "schwannoma", "metastasis", "metastases"],
             ["肿块", "团块", "包块", "肿物", "回声团", "占位", "纤维腺瘤", "脂肪瘤", "血管瘤", "腺瘤",
              "乳头状瘤", "癌", "肿瘤", "肌瘤", "错构瘤"]),
    "lesion": (["lesion", "lesions", "focal lesion", "abnormality", "hypoechoic area", "area of concern"],
               ["病灶", "病变", "回声区", "异常回声"]),
    "lymph_node": (["lymph node", "lymph nodes", "node", "nodes", "lymphadenopathy", "adenopathy",
                    "lymphnode", "lymphnodes"], ["淋巴结", "淋巴结影"]),
    "calcification": (["calcification", "calcifications", "calcified focus", "macrocalcification"],
                      ["钙化灶", "钙化斑", "钙化"]),
    "fluid_collection": (["fluid collection", "collection", "collections", "seroma", "abscess", "hematoma",
                          "haematoma", "effusion", "ascites", "free fluid", "hydrocele"],
                         ["积液", "脓肿", "血肿", "腹水", "液性暗区"]),
    "stone": (["stone", "stones", "calculus", "calculi", "gallstone", "gallstones", "cholelithiasis",
               "nephrolithiasis", "urolithiasis"], ["结石", "强回声团伴声影"]),
    "polyp": (["polyp", "polyps"], ["息肉", "息肉样病变"]),
    "hyperplasia": (["hyperplasia", "fibrocystic change", "fibrocystic changes"], ["增生", "增生结节"]),
    "duct_ectasia": (["duct ectasia", "ductal ectasia", "ductal dilatation", "dilated duct", "dilated ducts"],
                     ["导管扩张", "导管增宽", "导管稍扩张", "导管轻度扩张"]),
    "plaque": (["plaque", "plaques", "atherosclerotic plaque"], ["斑块"]),
    "thrombus": (["thrombus", "thrombosis", "dvt", "clot"], ["血栓", "血栓形成"]),
    "hydronephrosis": (["hydronephrosis", "pelviectasis", "pelvicaliectasis"], ["肾积水", "积水", "输尿管扩张"]),
}

# Kinds that describe the tissue rather than a lesion the annotator would outline; the Chinese breast
# data labels them apart from lesions (增生, 导管).
NON_LESION_KINDS = frozenset({"hyperplasia", "duct_ectasia"})

# Site words -> normalised site code.
SITES: dict[str, tuple[list[str], list[str]]] = {
    "upper": (["upper", "upper pole", "upper third", "superior pole"], ["上极", "上部", "上份", "上段"]),
    "mid": (["mid", "middle", "mid pole", "midpole", "mid-pole", "interpolar", "middle third", "mid portion"],
            ["中部", "中极", "中份", "中段", "中上部", "中下部"]),
    "lower": (["lower", "lower pole", "lower third", "inferior pole"], ["下极", "下部", "下份", "下段"]),
    "anterior": (["anterior", "anteriorly"], ["前方", "前部", "腹侧"]),
    "posterior": (["posterior", "posteriorly"], ["后部", "背侧"]),
    "medial": (["medial", "medially"], ["内侧"]),
    "lateral": (["lateral", "laterally"], ["外侧"]),
    "superior": (["superior"], []),
    "inferior": (["inferior"], []),
    "isthmus": (["isthmus", "isthmic"], ["峡部"]),
    "superficial": (["superficial"], ["浅层", "浅部"]),
    "deep": (["deep"], ["深部", "深层"]),
    "subcapsular": (["subcapsular"], ["包膜下"]),
}

# Context triggers: (category, direction).  Directions: "forward" (scope runs to the right up to a
# terminator or clause end), "backward" (to the left back to the clause start), "both".
# Category "pseudo" marks phrases that look like triggers but are not ("no change"): matched so that the
# real trigger inside them is suppressed.  "terminate" ends scopes.
CUES_EN: dict[tuple[str, str], list[str]] = {
    ("negated", "forward"): [
        "no", "not", "without", "negative for", "free of", "absence of", "no evidence of",
        "no sonographic evidence of", "no ultrasound evidence of", "there is no", "there are no",
        "no definite", "no suspicious", "no significant", "no discrete", "no focal", "no other",
        "rules out", "ruled out", "resolution of", "neither", "nor", "none", "no longer",
    ],
    ("negated", "backward"): [
        "not seen", "not visualized", "not visualised", "not identified", "not demonstrated", "not detected",
        "not appreciated", "not present", "no longer seen", "no longer visualized", "no longer visualised",
        "no longer identified", "no longer present", "no longer demonstrated", "is absent", "are absent",
        "has resolved", "have resolved", "resolved", "was not seen", "were not seen", "is not seen",
        "are not seen", "is not identified", "are not identified", "not evident",
    ],
    ("uncertain", "forward"): [
        "suspicious", "suspicious for", "suspicious of", "concerning for", "worrisome for", "possible", "possibly",
        "probable", "probably", "likely", "may represent", "may be", "could represent", "could be",
        "might be", "questionable", "question of", "cannot exclude", "can not exclude", "cannot rule out",
        "can't exclude", "differential includes", "differential diagnosis", "suggestive of",
        "suspected", "suspect", "presumed", "presumably", "favor", "favored", "favour", "rule out", "r/o",
        "vs", "vs.", "versus", "indeterminate", "equivocal", "consider", "considered",
    ],
    ("uncertain", "backward"): [
        "cannot be excluded", "can not be excluded", "not excluded", "cannot be ruled out",
        "can not be ruled out", "not ruled out", "is suspected", "are suspected", "is possible",
        "is not excluded", "?", "is likely", "are likely", "versus", "vs", "vs.", "is questioned",
    ],
    ("historical", "forward"): [
        "previously", "previous", "prior", "history of", "h/o", "known", "status post", "s/p",
        "post-surgical", "postsurgical", "post-operative", "postoperative", "post surgical", "resected",
        "old", "seen before", "previously seen", "previously noted", "previously described",
    ],
    ("historical", "backward"): [
        "previously seen", "seen previously", "noted previously", "previously noted", "previously described",
        "on prior", "on previous", "on the prior", "on the previous", "in the past",
    ],
    ("hypothetical", "forward"): [
        "if", "should", "in case", "in case of", "in the event", "in the event of", "whether", "unless",
        "would", "to exclude", "to evaluate for", "to assess for",
    ],
    ("family", "both"): [
        "family history", "family history of", "mother", "father", "sister", "brother", "aunt",
        "daughter", "son", "grandmother", "maternal", "paternal", "sibling", "cousin",
    ],
    ("pseudo", "none"): [
        "no change", "no interval change", "no significant change", "no significant interval change",
        "no appreciable change", "not changed", "not significantly changed", "no increase", "no growth",
        "no significant increase", "no significant growth", "without change", "without interval change",
        "not only", "no longer needed", "compared to prior", "compared with prior", "compared to the prior",
        "compared with the prior", "since prior", "from prior", "prior study", "prior exam",
        "prior examination", "prior ultrasound", "previous study", "previous exam", "previous examination",
        "previous ultrasound", "gram negative", "not necessarily", "no significant interval",
        "if needed", "if clinically indicated", "should be considered",
    ],
    ("terminate", "none"): [
        "but", "however", "although", "though", "except", "aside from", "apart from", "which", "whereas",
        "with the exception of", "otherwise", "while", "that is", "though",
    ],
}

CUES_ZH: dict[tuple[str, str], list[str]] = {
    ("negated", "forward"): [
        "未见", "未探及", "未发现", "未显示", "未检出", "未扫及", "未见明显", "未探及明显", "未发现明显",
        "无", "无明显", "没有", "不伴", "未", "否认", "未见确切", "未见明确",
    ],
    ("negated", "backward"): ["消失", "已消失", "未显示", "未见显示", "未探及", "阴性"],
    ("uncertain", "forward"): [
        "考虑", "疑似", "疑为", "疑", "倾向", "倾向于", "拟诊", "可疑", "不除外", "不排除", "未除外",
        "不能除外", "不能排除", "待排", "可能为", "可能是",
    ],
    ("uncertain", "backward"): [
        "可能", "可能性大", "待排", "待排除", "待除外", "？", "?", "不除外", "不排除", "未除外", "不能除外",
        "不能排除", "可疑",
    ],
    ("historical", "forward"): ["既往", "曾", "原", "前次", "以往", "有史"],
    ("historical", "backward"): ["病史", "术后", "切除术后", "既往史"],
    ("hypothetical", "forward"): ["如", "若", "如果", "假如", "如有", "若有", "必要时"],
    ("family", "both"): ["母亲", "父亲", "姐姐", "妹妹", "家族史", "家族", "女儿", "外婆", "奶奶"],
    ("pseudo", "none"): [
        "无明显变化", "未见明显变化", "较前无明显变化", "未见明显改变", "无明显改变", "无变化", "较前无变化",
        "无回声", "无血流", "如下", "原因", "未见明显增大", "考虑为主",
    ],
    ("terminate", "none"): ["但", "但是", "然而", "除外", "其余", "其他", "其它"],
}

# Section headers (lower-cased, without the colon) -> section code.
SECTIONS: dict[str, str] = {
    "findings": "findings", "finding": "findings", "ultrasound findings": "findings", "description": "findings",
    "sonographic findings": "findings", "report": "findings",
    "impression": "impression", "impressions": "impression", "conclusion": "impression",
    "conclusions": "impression", "assessment": "impression", "diagnosis": "impression", "summary": "impression",
    "history": "history", "clinical history": "history", "indication": "history", "indications": "history",
    "clinical information": "history", "reason for exam": "history", "clinical indication": "history",
    "technique": "technique", "procedure": "technique", "exam": "technique", "examination": "technique",
    "comparison": "comparison", "comparisons": "comparison",
    "recommendation": "recommendation", "recommendations": "recommendation", "plan": "recommendation",
    "超声所见": "findings", "检查所见": "findings", "所见": "findings", "超声描述": "findings",
    "超声提示": "impression", "超声诊断": "impression", "诊断意见": "impression", "结论": "impression",
    "印象": "impression", "诊断": "impression", "检查结论": "impression", "提示": "impression",
    "病史": "history", "临床诊断": "history", "建议": "recommendation",
}

# Field labels of structured ("Label: Value") report lines -> attribute-code hint.  A value written after
# the label is resolved to that attribute first ("Shape: irregular" is a shape, not a margin).
FIELD_HINTS: dict[str, frozenset[str]] = {
    "composition": frozenset({"composition", "internal_characteristics", "echo_pattern"}),
    "echogenicity": frozenset({"echogenicity", "echo_pattern"}),
    "echotexture": frozenset({"echogenicity", "echo_pattern"}),
    "echo pattern": frozenset({"echo_pattern", "echogenicity"}),
    "shape": frozenset({"shape"}),
    "orientation": frozenset({"orientation", "shape"}),
    "margin": frozenset({"margin", "margins"}),
    "margins": frozenset({"margin", "margins"}),
    "echogenic foci": frozenset({"echogenic_foci", "calcifications", "internal_characteristics"}),
    "calcifications": frozenset({"echogenic_foci", "calcifications", "internal_characteristics"}),
    "posterior features": frozenset({"posterior_features", "posterior_acoustics"}),
    "posterior acoustic features": frozenset({"posterior_features", "posterior_acoustics"}),
    "posterior acoustics": frozenset({"posterior_features", "posterior_acoustics"}),
    "vascularity": frozenset({"vascularity"}),
    "doppler": frozenset({"vascularity"}),
    "color doppler": frozenset({"vascularity"}),
    "colour doppler": frozenset({"vascularity"}),
    "cdfi": frozenset({"vascularity"}),
    "elasticity": frozenset({"elasticity"}),
    "elastography": frozenset({"elasticity"}),
    "associated features": frozenset({"associated_features"}),
}

# Labels that start a structured field (and therefore a new sentence) inside run-on text.
FIELD_LABELS: tuple[str, ...] = tuple(sorted(
    set(FIELD_HINTS) | {"location", "size", "site", "side", "laterality", "clock", "distance",
                        "acr ti-rads", "ti-rads", "tirads", "bi-rads", "birads", "total points", "points",
                        "acr ti-rads total points", "ti-rads total points", "acr ti-rads points", "ti-rads points", "category", "level"},
    key=len, reverse=True))

# Chinese numerals used in "III级" style categories.
ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "Ⅰ": 1, "Ⅱ": 2, "Ⅲ": 3, "Ⅳ": 4, "Ⅴ": 5, "Ⅵ": 6}
