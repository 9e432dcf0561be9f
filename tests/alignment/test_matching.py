"""The matcher on hand-made studies: each evidence feature, the no-match cases and the conflicts."""

from dataclasses import replace

from alignment.matching import (
    FindingInput,
    LesionInput,
    ReaderRegion,
    assessment_conflict,
    attribute_conflicts,
    body_marker_parse,
    clock_distance,
    clock_quadrant,
    match_source,
    ordinal_of,
    pair_score,
    reader_conflicts,
    size_conflict,
)
from annotation.lexicons import lexicon_load, tirads_level


def finding(key="s0f0", **kw):
    base = {"sentence_index": 0, "start": 0, "end": 10, "lesion": "nodule", "organ": "Breast"}
    base.update(kw)
    return FindingInput(key=key, **base)


def lesion(key="reader:L1", **kw):
    base = {"source": "reader", "region_ids": (1,), "image_ids": (10,), "organ": "Breast", "label": "nodule"}
    base.update(kw)
    return LesionInput(key=key, **base)


def f(values):
    return frozenset(values)


def test_body_marker_is_read():
    assert body_marker_parse("RT BREAST 10:00 3CMFN TRV") == {
        "laterality": "right", "clock": "10:00", "distance_cm": 3.0, "view": "transverse"}
    assert body_marker_parse("LT THY LONG") == {"laterality": "left", "view": "longitudinal"}
    assert body_marker_parse("") == {}


def test_clock_distance_is_circular_and_quadrants_mirror():
    assert clock_distance("12:00", "1:00") == 1
    assert clock_distance("11:30", "0:30") == 1
    assert clock_distance("10:00", "4:00") == 6
    assert clock_quadrant("10:00", "right") == "upper_outer"
    assert clock_quadrant("10:00", "left") == "upper_inner"
    assert clock_quadrant("2:00", "left") == "upper_outer"


def test_each_feature_moves_the_score():
    base, _ = pair_score(finding(), lesion())
    checks = [
        ({"laterality": "right"}, {"laterality": "right"}, 1),
        ({"laterality": "right"}, {"laterality": "left"}, -1),
        ({"clock": "10:00"}, {"clock": "10:30"}, 1),
        ({"clock": "10:00"}, {"clock": "4:00"}, -1),
        ({"quadrant": "upper_outer"}, {"clock": "10:00", "laterality": "right"}, 1),
        ({"distance_cm": 3.0}, {"distance_cm": 3.5}, 1),
        ({"distance_cm": 3.0}, {"distance_cm": 8.0}, -1),
        ({"size_mm": (12.0, 8.0)}, {"long_axis_mm": 12.5}, 1),
        ({"size_mm": (30.0,)}, {"long_axis_mm": 8.0}, -1),
        ({"organ": "Thyroid gland"}, {"organ": "Breast"}, -1),
        ({"attributes": {"echogenicity": f(["hypoechoic"])}}, {"attributes": {"echogenicity": f(["hypoechoic"])}}, 1),
        ({"attributes": {"echogenicity": f(["hypoechoic"])}}, {"attributes": {"echogenicity": f(["anechoic"])}}, -1),
        ({"ordinal": 2}, {"ordinal": 2}, 1),
        ({"view": "transverse"}, {"view": "transverse"}, 1),
    ]
    for finding_kw, lesion_kw, direction in checks:
        score, evidence = pair_score(finding(**finding_kw), lesion(**lesion_kw))
        assert (score - base) * direction > 0, (finding_kw, lesion_kw, score, evidence)


def test_two_findings_go_to_their_own_lesions():
    findings = [finding("s0f0", laterality="right", clock="2:00", size_mm=(12.0,), lesion="cyst"),
                finding("s0f1", laterality="right", clock="10:00", size_mm=(8.0,))]
    lesions = [lesion("r:L1", laterality="right", clock="10:00", long_axis_mm=8.2),
               lesion("r:L2", laterality="right", clock="2:00", long_axis_mm=11.5, label="cyst")]
    matches = {m.finding: m.lesion for m in match_source(findings, lesions)}
    assert matches == {"s0f0": "r:L2", "s0f1": "r:L1"}


def test_no_match_when_evidence_contradicts():
    matches = match_source([finding(laterality="left", clock="3:00")],
                           [lesion(laterality="right", clock="9:00")])
    assert matches == []


def test_negated_and_hypothetical_findings_are_not_matched():
    assert match_source([finding(negated=True, laterality="right")], [lesion(laterality="right")]) == []
    assert match_source([finding(hypothetical=True, laterality="right")], [lesion(laterality="right")]) == []


def test_a_repeat_mention_attaches_to_the_same_lesion():
    findings = [finding("s1f0", laterality="right", clock="10:00", size_mm=(12.0,)),
                finding("s5f0", laterality="right", clock="10:00")]
    matches = match_source(findings, [lesion(laterality="right", clock="10:00", long_axis_mm=12.0)])
    assert {(m.finding, m.repeat) for m in matches} == {("s1f0", False), ("s5f0", True)}


def test_attribute_conflict_and_negated_statement():
    pair_f = finding(attributes={"echogenicity": f(["hypoechoic"])},
                     negated_attributes={"posterior_acoustics": f(["shadowing"])})
    pair_l = lesion(attributes={"echogenicity": f(["isoechoic"]), "posterior_acoustics": f(["shadowing"])})
    conflicts = attribute_conflicts(pair_f, pair_l)
    assert [(c.attribute, c.values["report"]) for c in conflicts] == [
        ("echogenicity", ["hypoechoic"]), ("posterior_acoustics", ["no shadowing"])]


def test_size_mismatch_beyond_tolerance_only():
    assert size_conflict(finding(size_mm=(12.0,)), lesion(long_axis_mm=13.0)) is None
    assert size_conflict(finding(size_mm=(4.0,)), lesion(long_axis_mm=5.5)) is None  # within 2 mm
    conflict = size_conflict(finding(size_mm=(25.0, 10.0)), lesion(long_axis_mm=12.0))
    assert conflict.kind == "size_mismatch" and conflict.values["annotation"] == 12.0


def test_assessment_tirads_points_disagree_with_level():
    level = lambda points: tirads_level(lexicon_load("tirads"), points)  # noqa: E731
    wrong = finding(assessment={"system": "ACR TI-RADS", "category": "TR2", "points": 5})
    assert assessment_conflict(wrong, None, tirads_level_of=level).values["expected"] == ["TR4"]
    right = finding(assessment={"system": "ACR TI-RADS", "category": "TR4", "points": 5})
    assert assessment_conflict(right, None, tirads_level_of=level) is None


def test_assessment_birads_against_descriptors():
    suspicious = lesion(attributes={"shape": f(["irregular"]), "margins": f(["ill_defined_indistinct"])})
    benign = lesion(attributes={"shape": f(["oval"]), "echogenicity": f(["anechoic"]), "margins": f(["well_defined"])})
    low = finding(assessment={"system": "BI-RADS", "category": "2"})
    high = finding(assessment={"system": "BI-RADS", "category": "4C"})
    assert assessment_conflict(low, suspicious).kind == "assessment_inconsistent"
    assert assessment_conflict(low, benign) is None
    assert assessment_conflict(high, benign).kind == "assessment_inconsistent"
    assert assessment_conflict(high, suspicious) is None


def test_reader_conflicts_by_iou_and_attributes():
    square = {"points": [[0, 0], [100, 0], [100, 100], [0, 100]]}
    shifted = {"points": [[5, 5], [105, 5], [105, 105], [5, 105]]}
    far = {"points": [[300, 300], [350, 300], [350, 350]]}
    regions = [ReaderRegion(1, "ann1", "polygon", square, {"echogenicity": f(["hypoechoic"])}),
               ReaderRegion(2, "ann2", "polygon", shifted, {"echogenicity": f(["isoechoic"])}),
               ReaderRegion(3, "ann2", "polygon", far, {})]
    conflicts = reader_conflicts(7, regions)
    kinds = sorted((c.attribute, c.region_ids) for c in conflicts)
    assert kinds == [("echogenicity", (1, 2)), ("region", (3,))]
    # A reader who drew nothing disagrees with one who drew a lesion.
    alone = reader_conflicts(8, regions[:1], readers=["ann1", "ann2"])
    assert [(c.attribute, c.region_ids) for c in alone] == [("region", (1,))]


def test_ordinals():
    assert ordinal_of("L2") == 2
    assert ordinal_of("The second nodule is smaller.") == 2
    assert ordinal_of("结节2：低回声") == 2
    assert ordinal_of("no number") is None


def test_a_one_word_impression_is_not_called_unsupported():
    high = finding(assessment={"system": "BI-RADS", "category": "4C"})
    assert assessment_conflict(high, lesion(attributes={"echogenicity": f(["hypoechoic"])})) is None


def test_only_a_located_finding_can_be_missing():
    assert not finding(lesion="calcification", laterality="right").is_located
    assert finding(lesion="nodule", site=("lower",)).is_located
    assert not finding(lesion="hyperplasia", size_mm=(5.0,)).is_lesion


def test_untagged_single_valued_attribute_conflicts_but_multi_valued_does_not():
    described = finding(attributes={"posterior_acoustics": f(["shadowing"]), "internal_characteristics": f(["cystic_components"])})
    conflicts = attribute_conflicts(described, lesion(attributes={}), single_valued=["posterior_acoustics"])
    assert [(c.attribute, c.values["annotation"]) for c in conflicts] == [("posterior_acoustics", [])]


def test_continuation_sentence_joins_the_lesion_before_it():
    from alignment.matching import findings_merge_continuations

    first = finding("s1f0", laterality="left", clock="8:00", size_mm=(17.0, 10.0), lesion="mass", end=80)
    more = finding("s2f0", lesion="lesion", start=81, end=100, attributes={"shape": f(["round"])})
    merged = findings_merge_continuations([first, more])
    assert len(merged) == 1 and merged[0].end == 100 and merged[0].attributes["shape"] == {"round"}
    other = finding("s3f0", lesion="cyst", clock="2:00", size_mm=(5.0,))
    assert len(findings_merge_continuations([first, other])) == 2


def test_tirads_level_outside_what_the_udaf_tags_allow():
    level = lambda points: tirads_level(lexicon_load("tirads"), points)  # noqa: E731
    nodule = lesion(attributes={"echogenicity": f(["isoechoic"]), "internal_characteristics": f(["solid_components"]),
                                "shape": f(["oval"])})
    said_tr5 = finding(assessment={"system": "ACR TI-RADS", "category": "TR5"})
    conflict = assessment_conflict(said_tr5, nodule, tirads_level_of=level)
    assert conflict.values["expected"] == ["TR3", "TR4"]
    said_tr4 = finding(assessment={"system": "ACR TI-RADS", "category": "TR4"})
    assert assessment_conflict(said_tr4, nodule, tirads_level_of=level) is None


def test_thyroid_site_from_the_body_marker_decides_between_two_nodules():
    upper = lesion("r:L1", laterality="right", site=("upper",), organ="Thyroid gland")
    lower = lesion("r:L2", laterality="right", site=("lower",), organ="Thyroid gland")
    described = finding("s1f0", laterality="right", site=("lower",), organ="Thyroid gland", size_mm=(12.0,))
    assert [(m.finding, m.lesion) for m in match_source([described], [upper, lower])] == [("s1f0", "r:L2")]
    assert body_marker_parse("RT THY TRV LOW")["site"] == "lower"


def test_a_second_nodule_at_the_same_site_is_not_taken_for_a_restatement():
    drawn = lesion("r:L1", laterality="left", site=("mid",), organ="Thyroid gland", long_axis_mm=16.0,
                   attributes={"echogenicity": f(["hypoechoic"])})
    first = finding("s1f0", laterality="left", site=("mid",), organ="Thyroid gland", size_mm=(16.0,),
                    attributes={"echogenicity": f(["hypoechoic"])})
    second = finding("s2f0", laterality="left", site=("mid",), organ="Thyroid gland", size_mm=(10.0, 7.0),
                     attributes={"echogenicity": f(["isoechoic"])})
    assert [(m.finding, m.repeat) for m in match_source([first, second], [drawn])] == [("s1f0", False)]


def test_impression_lines_that_fit_two_alike_nodules_take_them_once_each_in_report_order():
    kw = {"laterality": "right", "clock": "10:00", "organ": "Breast"}
    drawn = [lesion("r:L1", long_axis_mm=16.0, **kw), lesion("r:L2", long_axis_mm=7.0, **kw,
                                                             attributes={"echogenicity": f(["mixed_echogenicity"])})]
    findings = [finding("s1f0", size_mm=(7.0,), attributes={"echogenicity": f(["mixed_echogenicity"])}, **kw),
                finding("s2f0", size_mm=(16.0,), start=20, end=30, **kw),
                # "1. Mixed-echogenicity nodule ... 2. Nodule in the right breast at 10:00"
                finding("s5f0", section="impression", start=40, end=50,
                        attributes={"echogenicity": f(["mixed_echogenicity"])}, **kw),
                finding("s6f0", section="impression", start=60, end=70, **kw)]
    links = {m.finding: m.lesion for m in match_source(findings, drawn)}
    assert links == {"s1f0": "r:L2", "s2f0": "r:L1", "s5f0": "r:L2", "s6f0": "r:L1"}
    # nothing but their order tells two impression lines apart: the first restates the first described
    alike = [finding("s1f0", size_mm=(7.0,), **kw), finding("s2f0", size_mm=(16.0,), start=20, end=30, **kw),
             finding("s5f0", section="impression", start=40, end=50, **kw),
             finding("s6f0", section="impression", start=60, end=70, **kw)]
    links = {m.finding: m.lesion for m in match_source(alike, drawn)}
    assert links == {"s1f0": "r:L2", "s2f0": "r:L1", "s5f0": "r:L2", "s6f0": "r:L1"}



def test_two_impression_lines_with_different_categories_are_two_lesions():
    kw = {"laterality": "right", "site": ("mid",), "organ": "Thyroid gland"}
    nodules = [finding("s1f0", size_mm=(12.0,), **kw), finding("s2f0", size_mm=(7.0,), start=20, end=30, **kw),
               # "1. Nodule in the mid portion of the right lobe, ACR TI-RADS TR4. 2. ..., TR3."
               finding("s5f0", section="impression", start=40, end=50, assessment={"category": "TR4"}, **kw),
               finding("s6f0", section="impression", start=60, end=70, assessment={"category": "TR3"}, **kw)]
    both = [lesion("r:L1", long_axis_mm=12.0, **kw), lesion("r:L2", long_axis_mm=7.0, **kw)]
    links = {m.finding: (m.lesion, m.ambiguous) for m in match_source(nodules, both)}
    assert links == {"s1f0": ("r:L1", False), "s2f0": ("r:L2", False), "s5f0": ("r:L1", True),
                     "s6f0": ("r:L2", True)}
    # The second reader drew the first nodule only: the TR3 line is about the one not drawn.
    links = {m.finding: m.lesion for m in match_source(nodules, both[:1])}
    assert links == {"s1f0": "r:L1", "s5f0": "r:L1"}
    # Lines of one category may still restate one lesion.
    same = [replace(nodules[3], assessment={"category": "TR4"})]
    assert {m.finding for m in match_source(nodules[:3] + same, both[:1])} == {"s1f0", "s5f0", "s6f0"}
    # Of a nodule and a cyst the readers drew the cyst only: its line, the better fit, keeps it.
    cyst = finding("s2f0", lesion="cyst", size_mm=(15.0,), attributes={"echogenicity": f(["anechoic"])}, **kw)
    lines = [replace(nodules[2], start=40), replace(cyst, key="s6f0", section="impression", size_mm=(), start=60,
                                                   end=70, assessment={"category": "TR1"})]
    drawn = lesion("r:L1", long_axis_mm=15.0, attributes={"echogenicity": f(["anechoic"])}, **{**kw, "label": "cyst"})
    nodule = replace(nodules[0], size_mm=(25.0,), attributes={"echogenicity": f(["hypoechoic"])})
    links = {m.finding: m.lesion for m in match_source([nodule, cyst, *lines], [drawn])}
    assert links == {"s2f0": "r:L1", "s6f0": "r:L1"}


# ----------------------------------------------------------------------------------------- a whole study


def _study(findings, lesions=(), *, image_ids=(10,), readers_of=None, fully_read=True):
    from alignment.matching import StudyInput, study_match

    readers_of = {10: ["ann1"]} if readers_of is None else readers_of
    return study_match(StudyInput(findings=findings, lesions=list(lesions), image_ids=image_ids,
                                  readers_of=readers_of, fully_read=fully_read))


def test_a_reading_that_drew_nothing_reports_each_located_lesion_finding():
    mass = finding("s1f0", laterality="right", clock="2:00", size_mm=(23.0,), lesion="mass")
    described = finding("s2f0", lesion="lesion", attributes={"shape": f(["irregular"])})  # no place, no size
    lobe = finding("s3f0", lesion="organ_measurement", organ="Thyroid gland", laterality="right", size_mm=(49.0, 16.0))
    result = _study([mass, described, lobe])
    missing = [c for c in result.conflicts if c.kind == "reported_not_annotated"]
    assert [(c.finding, c.values["sources"]) for c in missing] == [("s1f0", ["ann1"])]
    assert missing[0].values["report"]["size_mm"] == [23.0]
    # not yet: an image nobody has read, or a reading still open, may hold the lesion
    assert _study([mass], image_ids=(10, 11)).conflicts == []
    assert _study([mass], fully_read=False).conflicts == []
    # nobody read anything and nothing was imported: no reading to compare with
    assert _study([mass], readers_of={}).conflicts == []


def test_an_axilla_image_is_not_the_breast_finding_at_two_oclock():
    described = finding("s1f0", laterality="right", clock="2:00", distance_cm=5.0, size_mm=(30.0,),
                        attributes={"echogenicity": f(["hypoechoic"])})
    marker = body_marker_parse("RT BREAST AXILLA")
    axilla = lesion("r:L1", laterality=marker["laterality"], site=(marker["site"],), long_axis_mm=8.0,
                    attributes={"echogenicity": f(["hypoechoic"])})
    score, evidence = pair_score(described, axilla)
    assert "veto" in evidence and score < 0
    assert match_source([described], [axilla]) == []
    result = _study([described], [axilla])
    assert sorted(c.kind for c in result.conflicts) == ["annotated_not_reported", "reported_not_annotated"]


def test_another_organ_or_the_isthmus_against_a_lobe_vetoes_a_link():
    nodule = finding(laterality="right", organ="Thyroid gland", site=("isthmus",), size_mm=(9.0,))
    assert match_source([nodule], [lesion(laterality="right", organ="Thyroid gland", site=("lower",),
                                          long_axis_mm=9.0)]) == []
    assert match_source([finding(laterality="right", organ="Liver", size_mm=(9.0,))],
                        [lesion(laterality="right", organ="Kidney and ureter", long_axis_mm=9.0)]) == []


def test_a_long_axis_twice_as_long_needs_the_place_to_agree():
    big = finding(laterality="right", size_mm=(30.0,), attributes={"echogenicity": f(["hypoechoic"])})
    small = lesion(laterality="right", long_axis_mm=8.0, attributes={"echogenicity": f(["hypoechoic"])})
    assert match_source([big], [small]) == []
    placed = replace(big, clock="10:00", distance_cm=3.0)
    [match] = match_source([placed], [replace(small, clock="10:00", distance_cm=3.0)])
    assert "veto" not in match.evidence
    assert size_conflict(placed, small).kind == "size_mismatch"  # linked, and the size is argued


def test_an_organ_measurement_aligns_to_a_caliper_of_that_organ_and_side():
    lobe = finding("s1f0", lesion="organ_measurement", organ=None, laterality="right", size_mm=(49.0, 16.0, 18.0))
    right = lesion("r:L1", laterality="right", organ="thyroid", label="lobe", long_axis_mm=17.0, shapes=("line",))
    left = lesion("r:L2", laterality="left", organ="thyroid", label="lobe", long_axis_mm=45.0, shapes=("line",))
    outline = lesion("r:L3", laterality="right", organ="thyroid", long_axis_mm=48.0, shapes=("polygon",))
    result = _study([lobe], [left, right, outline])
    assert [(m.finding, m.lesion) for m in result.matches] == [("s1f0", "r:L1")]
    assert not [c for c in result.conflicts if c.kind in ("size_mismatch", "reported_not_annotated")]
    wrong = replace(right, long_axis_mm=30.0)
    result = _study([lobe], [wrong])
    assert [c.values for c in result.conflicts if c.kind == "size_mismatch"] == [
        {"report": [49.0, 16.0, 18.0], "annotation": 30.0}]
    assert _study([lobe], [left]).matches == []


def test_a_summary_repeating_a_misstated_size_is_the_same_lesion_not_a_missing_one():
    summary = finding("s1f0", laterality="left", clock="2:00", size_mm=(6.0,), attributes={"echogenicity": f(["hyperechoic"])})
    described = finding("s2f0", laterality="left", clock="2:00", distance_cm=1.0, size_mm=(6.0, 6.0),
                        attributes={"echogenicity": f(["hyperechoic"])})
    drawn = lesion("r:L1", laterality="left", clock="2:00", distance_cm=1.0, long_axis_mm=10.5,
                   attributes={"echogenicity": f(["hypoechoic"])})
    result = _study([summary, described], [drawn])
    assert sorted((m.finding, m.repeat) for m in result.matches) == [("s1f0", True), ("s2f0", False)]
    assert sorted(c.kind for c in result.conflicts) == ["report_vs_annotation", "size_mismatch"]
    # a mention that says another size than the first is another lesion
    other = replace(summary, size_mm=(25.0,))
    assert [m.finding for m in match_source([other, described], [drawn])] == ["s2f0"]


def test_a_size_field_gives_the_lesion_before_it_its_size():
    from alignment.matching import findings_merge_continuations

    label = finding("s1f0", lesion="nodule", laterality="left", site=("mid",), end=40)
    size = finding("s2f0", lesion=None, start=41, end=60, size_mm=(17.0, 10.0))
    [merged] = findings_merge_continuations([label, size])
    assert merged.size_mm == (17.0, 10.0) and merged.site == ("mid",) and merged.end == 60
    placed = replace(size, clock="3:00")  # a size with a place of its own is a finding of its own
    assert len(findings_merge_continuations([label, placed])) == 2
