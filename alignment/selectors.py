"""Reads of alignment results for people: the report's sentences with their findings and the regions
they are linked to, and the attribute values a region's report findings suggest.

Callers fetch the study, image or region through ``annotation.selectors.*_get_for_user`` first (one
permission check, one place); these functions then apply blind reading to the links themselves: an
annotator sees only links to regions ``annotation.selectors.regions_visible`` lets them see.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.db.models import Prefetch
from django.db.models.fields.json import KeyTransform
from django.utils.translation import get_language

from annotation import selectors as annotation_selectors
from annotation.lexicons import lexicon_load
from annotation.models import Image, Region, Report, Study
from annotation.permissions import may_review
from annotation.selectors import dataset_roles, regions_visible

from . import matching
from .models import Alignment, Finding, Sentence
from .nlp import PIPELINE_VERSION
from .nlp.vocabulary import LESIONS


def sentences_current(*, report: Report | None) -> list[Sentence]:
    """The sentences of the report's current version, from this pipeline's parse when there is one
    (else the newest stored parse), findings prefetched; [] before the report is parsed."""
    if report is None:
        return []
    rows = (Sentence.objects.filter(report=report, report_version=report.version)
            .prefetch_related(Prefetch("findings", queryset=Finding.objects.order_by("index"))))
    versions = set(rows.values_list("pipeline_version", flat=True).distinct())
    if not versions:
        return []
    version = PIPELINE_VERSION if PIPELINE_VERSION in versions else max(versions)
    return list(rows.filter(pipeline_version=version).order_by("index"))


def report_sentences(*, report: Report | None) -> list[dict]:
    """The report's sentences to show beside its images, each with how many findings the current
    parse found in it; a plain split (0 findings each) before the report is parsed."""
    sentences = sentences_current(report=report)
    if not sentences:
        return annotation_selectors.report_sentences_plain(report=report)
    return [{"index": s.index, "start": s.start, "end": s.end, "text": s.text, "section": s.section,
             "findings": len(s.findings.all())} for s in sentences]


def _visible_region_ids(*, user, study: Study, images: Iterable[Image] | None = None) -> set[int] | None:
    """Ids of the study's live regions ``user`` may see, or None for "all of them" (reviewers, admins)."""
    if may_review(dataset_roles(user=user, dataset_id=study.dataset_id)):
        return None
    if images is None:
        # An annotator sees only the images assigned to them (as ``image_get_for_user`` rules).
        images = Image.objects.filter(study=study, assignments__annotator=user).select_related("study").distinct()
    visible: set[int] = set()
    for image in images:
        visible.update(regions_visible(user=user, image=image).values_list("pk", flat=True))
    return visible


def _effective_links(*, sentences: list[Sentence], region_ids: set[int] | None,
                     image: Image | None) -> dict[tuple[int, int], Alignment]:
    """The decision in force for each (sentence, region) pair: a reviewer's manual decision wins over
    the matcher's link (until the next run removes an unlinked auto row, both may be stored)."""
    rows = Alignment.objects.filter(sentence__in=sentences, region__isnull=False, region__is_deleted=False)
    if image is not None:
        rows = rows.filter(image=image)
    if region_ids is not None:
        rows = rows.filter(region_id__in=region_ids)
    decided: dict[tuple[int, int], Alignment] = {}
    for row in rows.select_related("created_by").order_by("id"):
        key = (row.sentence_id, row.region_id)
        current = decided.get(key)
        if current is None or (row.source == Alignment.Source.MANUAL and current.source != Alignment.Source.MANUAL):
            decided[key] = row
    return decided


@lru_cache(maxsize=1)
def _kind_labels_zh() -> dict[str, str]:
    """Chinese names of lesion kinds (the parser's first Chinese word for each) and organs (the UDAF
    lexicon's labels), for the finding tags of a Chinese interface."""
    labels = {kind: words[1][0] for kind, words in LESIONS.items() if len(words) > 1 and words[1]}
    for attribute in lexicon_load("udaf").get("attributes", []):
        if attribute["code"] == "organ_level":
            labels.update({value["code"]: value["label_zh"] for value in attribute["values"] if value.get("label_zh")})
    return labels


SIDES_ZH = {"left": "左侧", "right": "右侧", "bilateral": "双侧"}


def finding_summary(finding: Finding, *, language: str | None = None) -> str:
    """A few words for the finding's tag beside its sentence, in the interface language:
    "nodule · right 10:00 · 12×8 mm" / "结节 · 右侧 10:00 · 12×8 mm"."""
    zh = (language or get_language() or "").startswith("zh")
    kind = finding.lesion or finding.organ or "finding"
    if zh:
        name = _kind_labels_zh().get(kind) or ("所见" if kind == "finding" else kind.replace("_", " "))
        parts = [("未见" if finding.negated else "") + name]
        side = SIDES_ZH.get(finding.laterality, finding.laterality)
    else:
        parts = [("no " if finding.negated else "") + kind.replace("_", " ").lower()]
        side = finding.laterality
    place = " ".join(p for p in (side, finding.clock or finding.quadrant.replace("_", " ")) if p)
    if place:
        parts.append(place)
    if finding.distance_from_nipple_cm is not None:
        parts.append(f"距乳头 {finding.distance_from_nipple_cm:g} cm" if zh else f"{finding.distance_from_nipple_cm:g} cm FN")
    if finding.size_mm:
        parts.append("×".join(f"{size:g}" for size in finding.size_mm) + " mm")
    if finding.assessment and finding.assessment.get("category"):
        parts.append(f"{finding.assessment.get('system') or ''} {finding.assessment['category']}".strip())
    return " · ".join(parts)


def _finding_output(finding: Finding) -> dict[str, Any]:
    return {"id": finding.pk, "summary": finding_summary(finding), "index": finding.index, "lesion": finding.lesion, "organ": finding.organ,
            "laterality": finding.laterality, "clock": finding.clock, "quadrant": finding.quadrant,
            "distance_from_nipple_cm": finding.distance_from_nipple_cm, "size_mm": finding.size_mm,
            "negated": finding.negated, "uncertain": finding.uncertain, "assessment": finding.assessment,
            "attributes": finding.attributes, "data": finding.data}


def _link_output(row: Alignment) -> dict[str, Any]:
    return {"id": row.pk, "region": row.region_id, "image": row.image_id, "score": row.score,
            "evidence": row.evidence, "source": row.source, "linked": row.linked,
            "finding": row.finding_id, "created_by": row.created_by.username if row.created_by else None}


def study_alignment_for_user(*, user, study: Study, image: Image | None = None,
                             region_id: int | None = None) -> list[dict[str, Any]]:
    """The study's current sentences, each with its findings (the parser's data) and ``links``: the
    linked regions in force (manual decisions win) that ``user`` may see — only those on ``image``
    when given. ``decisions`` lists the manual rows (links and unlinks) behind them, for reviewers to
    undo. With ``region_id``, each sentence also says how it stands with that region (``pair``).

    Precondition: ``user`` may open the study (and ``image``), checked by the caller.
    """
    sentences = sentences_current(report=Report.objects.filter(study=study).first())
    region_ids = _visible_region_ids(user=user, study=study, images=[image] if image is not None else None)
    decided = _effective_links(sentences=sentences, region_ids=region_ids, image=image)
    out = []
    for sentence in sentences:
        rows = sorted((row for (sid, _), row in decided.items() if sid == sentence.pk),
                      key=lambda row: (-row.score, row.region_id))
        pair = None
        if region_id is not None:
            row = decided.get((sentence.pk, region_id))
            pair = {"linked": bool(row and row.linked), "source": row.source if row else None,
                    "manual": row.pk if row and row.source == Alignment.Source.MANUAL else None}
        out.append({
            "id": sentence.pk, "index": sentence.index, "start": sentence.start, "end": sentence.end,
            "text": sentence.text, "section": sentence.section,
            "findings": [_finding_output(f) for f in sentence.findings.all()],
            "links": [_link_output(row) for row in rows if row.linked],
            "decisions": [_link_output(row) for row in rows if row.source == Alignment.Source.MANUAL],
            "region_ids": sorted({row.region_id for row in rows if row.linked}),
            "pair": pair,
        })
    return out


# ---------------------------------------------------------------------------------------------- suggestions


def _lexicon_values(lexicon) -> dict[str, tuple[str, set[str]]]:
    return {a["code"]: (a.get("cardinality", "one"), {v["code"] for v in a.get("values", [])})
            for a in lexicon.content.get("attributes", [])}


def attributes_suggested(*, findings: Iterable[Finding], lexicon) -> dict[str, Any]:
    """The region attributes that ``findings`` (best first) state in the dataset's lexicon: asserted
    values only (negated and uncertain ones are no suggestion), each checked against the lexicon's
    codes. A single-choice attribute takes the first finding's value; a multi-choice one the union."""
    allowed = _lexicon_values(lexicon)
    out: dict[str, Any] = {}
    for finding in findings:
        if finding.negated or finding.uncertain:
            continue
        stated = matching.stated_values(finding.attributes or [], lexicon=lexicon.system, inferred=True)
        for name, value in ((name, value) for name, values in stated.asserted.items() for value in values):
            if name not in allowed or value not in allowed[name][1]:
                continue
            if allowed[name][0] == "many":
                values = out.setdefault(name, [])
                if value not in values:
                    values.append(value)
            else:
                out.setdefault(name, value)
    return out


def _image_lesion(region: Region) -> matching.LesionInput:
    """The region as the matcher sees a lesion: where the image's body marker puts it, its size."""
    from . import services

    return services.lesion_input(key=f"r{region.pk}", source="suggestion", regions=[region], study=region.image.study)


def region_report_findings(*, user, region: Region) -> dict[str, Any]:
    """What the report says about ``region``, for "apply report findings": the findings of the
    sentences linked to it (``basis="aligned"``) or, before any link exists (a reading in progress is
    aligned only once submitted), the report's lesion finding whose location best fits the image's
    body marker and the region (``basis="location"``, ranked by ``matching.pair_score``).

    Returns ``{"basis", "sentences": [ids], "findings": [ids], "attributes": {code: value(s)}}``;
    ``basis`` is None when the report offers nothing. Precondition: ``user`` may see ``region``.
    """
    from . import services

    study = region.image.study
    lexicon = study.dataset.lexicon
    sentences = sentences_current(report=Report.objects.filter(study=study).first())
    empty = {"basis": None, "sentences": [], "findings": [], "attributes": {}}
    if not sentences:
        return empty
    decided = _effective_links(sentences=sentences, region_ids={region.pk}, image=region.image)
    linked = sorted((row for row in decided.values() if row.linked), key=lambda row: -row.score)
    if linked:
        by_id = {f.pk: f for s in sentences for f in s.findings.all()}
        sentence_by_id = {s.pk: s for s in sentences}
        findings: list[Finding] = []
        for row in linked:
            candidates = [by_id[row.finding_id]] if row.finding_id in by_id else list(
                sentence_by_id[row.sentence_id].findings.all())
            findings.extend(f for f in candidates if f not in findings)
        return {"basis": "aligned", "sentences": sorted({row.sentence_id for row in linked}),
                "findings": [f.pk for f in findings],
                "attributes": attributes_suggested(findings=findings, lexicon=lexicon)}
    inputs, rows = services._finding_inputs(sentences, lexicon.system)
    lesion = _image_lesion(region)
    ranked = []
    for position, finding_input in enumerate(inputs):
        if not finding_input.is_lesion or finding_input.uncertain:
            continue
        score, evidence = matching.pair_score(finding_input, lesion)
        # A finding on the other side or far round the clock is no suggestion, whatever else agrees.
        elsewhere = any(evidence.get(name, {}).get("score", 0) < 0 for name in ("laterality", "clock", "quadrant"))
        if score > 0 and not elsewhere:
            ranked.append((-score, position, finding_input.key))
    if not ranked:
        return empty
    sentence, finding = rows[min(ranked)[2]]
    return {"basis": "location", "sentences": [sentence.pk], "findings": [finding.pk],
            "attributes": attributes_suggested(findings=[finding], lexicon=lexicon)}


# ---------------------------------------------------------------------------------------------- export


# What an export reads of a finding's full parse beyond its columns (the rest of ``data`` stays unread):
# an organ measurement's site, what it measures and its volume.
EXPORTED_DATA = ("site", "measurement", "volume_ml")


def sentences_for_export(*, studies, image_ids: Iterable[int] | None
                         ) -> tuple[dict[int, list[Sentence]], dict[tuple[int, int], list[int]]]:
    """``sentences_current`` for the reports of many studies at once, for a batch export: ``studies`` is
    a queryset (read as a subquery, so a chunk of thousands costs what one does). Returns the sentences
    of each report's current version and parse (keyed by report id, in order, findings prefetched in
    order) and, keyed by (sentence id, image id) for ``image_ids`` (None: every image), the ids of the
    regions each sentence is linked to there (ascending), as ``_effective_links`` decides. A fixed number of queries; no
    permission check (the caller exports a dataset its user administers)."""
    sentences = Sentence.objects.filter(report__study__in=studies)
    parses: dict[int, set[str]] = {}
    for report_id, report_version, current_version, pipeline_version in (
            sentences.values_list("report_id", "report_version", "report__version", "pipeline_version").distinct()):
        if report_version == current_version:
            parses.setdefault(report_id, set()).add(pipeline_version)
    if not parses:
        return {}, {}
    current = {report_id: PIPELINE_VERSION if PIPELINE_VERSION in versions else max(versions)
               for report_id, versions in parses.items()}
    rows = (sentences.filter(pipeline_version__in=set(current.values())).select_related("report")
            .only("report_id", "report_version", "pipeline_version", "index", "start", "end", "text", "report__version")
            .order_by("report_id", "index", "id")
            .prefetch_related(Prefetch("findings", queryset=Finding.objects.defer("data").order_by("index", "id")
                                       .annotate(**{key: KeyTransform(key, "data") for key in EXPORTED_DATA}))))
    by_report: dict[int, list[Sentence]] = {}
    for sentence in rows:
        if sentence.report_version == sentence.report.version and sentence.pipeline_version == current.get(
                sentence.report_id):
            by_report.setdefault(sentence.report_id, []).append(sentence)
    wanted = None if image_ids is None else set(image_ids)
    links: dict[tuple[int, int], list[int]] = {}
    kept = [sentence for report_sentences in by_report.values() for sentence in report_sentences]
    for (sentence_id, region_id), row in sorted(_effective_links(sentences=kept, region_ids=None, image=None).items()):
        if row.linked and (wanted is None or row.image_id in wanted):
            links.setdefault((sentence_id, row.image_id), []).append(region_id)
    return by_report, links
