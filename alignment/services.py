"""The one adapter between the database and the report parser / matcher.

``report_parse`` stores the parser's sentences and findings keyed by (report version, pipeline
version); ``study_align`` claims a study, aligns its findings to its annotated lesions and upserts the
disagreements; ``dataset_align_start`` opens a progress row for a dataset-wide run. All are idempotent:
re-running replaces their own output and keeps what people made (manual alignments, resolutions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from annotation.lexicons import lexicon_load, lexicon_systems, tirads_level, tirads_points
from annotation.models import Assignment, Dataset, Image, Region, Report, Study

from . import matching, nlp
from .models import Alignment, AlignmentRun, Disagreement, Finding, Sentence, StudyAlignmentState
from .nlp import PIPELINE_VERSION
from .signals import disagreements_changed

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def parse_version() -> str:
    """The key parse results are stored under: the parser's version and the versions of the lexicon
    files it reads its patterns from, so editing a lexicon re-parses reports instead of mixing old and
    new readings."""
    versions = [f"{system}={lexicon_load(system)['version']}" for system in lexicon_systems()]
    return f"{PIPELINE_VERSION}-{hashlib.sha1(';'.join(versions).encode()).hexdigest()[:10]}"
CLAIM_TIMEOUT = timedelta(seconds=int(os.environ.get("ALIGNMENT_CLAIM_TIMEOUT", "300")))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- parsing


def parser_warm() -> threading.Thread:
    """Import spaCy and SciPy and build the report pipelines on a background thread, for a process
    that will align soon and waits on other work meanwhile (an import aligning in-process, while its
    decoders catch up): the parser is ready when the first reports arrive. Start it after any fork
    (a child must not inherit a half-done import)."""

    def warm() -> None:
        try:
            import scipy.optimize  # noqa: F401 — what matching imports on first use

            from .nlp.pipeline import get_pipeline

            for language in ("en", "zh"):
                get_pipeline(language)
        except Exception:  # noqa: BLE001 — the first parse builds it again and says what is wrong
            log.debug("parser warm-up failed", exc_info=True)

    thread = threading.Thread(target=warm, name="parser-warm", daemon=True)
    thread.start()
    return thread


def report_parse(*, report: Report) -> list[Sentence]:
    """Parse ``report`` unless its current (version, pipeline) parse is stored; return the sentences
    (``reports_parse`` of the one report)."""
    return reports_parse(reports=[report])[report.pk]


def reports_parse(*, reports: list[Report]) -> dict[int, list[Sentence]]:
    """Parse each report unless its current (version, pipeline) parse is stored; return each report's
    sentences in order, by report id, their findings loaded. A handful of queries whatever the number
    of reports, so an import's chunk is parsed in one go.

    Older parses of a report are replaced; a reviewer's manual alignments move to the sentence with
    the same text in the new parse (and are dropped only if that sentence is gone). Precondition: each
    report's ``study.dataset.lexicon`` is loaded (or cheap to load).
    """
    version = parse_version()
    by_id = {report.pk: report for report in reports}

    def stored(ids) -> dict[int, list[Sentence]]:
        found: dict[int, list[Sentence]] = defaultdict(list)
        for sentence in (Sentence.objects.filter(report_id__in=ids, pipeline_version=version)
                         .prefetch_related("findings").order_by("report_id", "index")):
            if sentence.report_version == by_id[sentence.report_id].version:
                found[sentence.report_id].append(sentence)
        return found

    result = stored(list(by_id))
    missing = [report for report in reports if report.pk not in result]
    if not missing:
        return {pk: result.get(pk, []) for pk in by_id}
    parsed = {report.pk: nlp.parse_report(report.text, language=report.language,
                                          lexicon=report.study.dataset.lexicon.system)
              for report in missing}
    with transaction.atomic():
        ids = list(Report.objects.select_for_update().filter(pk__in=list(parsed)).order_by("pk")
                   .values_list("pk", flat=True))
        earlier: dict[int, set] = defaultdict(set)
        for report_id, report_version, pipeline in (Sentence.objects.filter(report_id__in=ids)
                                                    .values_list("report_id", "report_version", "pipeline_version")
                                                    .distinct()):
            earlier[report_id].add((report_version, pipeline))
        # another worker parsed some while we did: theirs stand
        todo = [pk for pk in ids if (by_id[pk].version, version) not in earlier[pk]]
        replaced = [pk for pk in todo if earlier[pk]]
        manual: dict[int, list[dict]] = defaultdict(list)
        if replaced:
            old = Sentence.objects.filter(report_id__in=replaced)
            for m in Alignment.objects.filter(sentence__in=old, source=Alignment.Source.MANUAL).values(
                    "sentence__report_id", "sentence__text", "image_id", "region_id", "linked", "created_by_id",
                    "score"):
                manual[m["sentence__report_id"]].append(m)
            old.delete()
        rows = [(pk, parsed_sentence, Sentence(
                    report_id=pk, report_version=by_id[pk].version, pipeline_version=version,
                    index=parsed_sentence.index, start=parsed_sentence.start, end=parsed_sentence.end,
                    text=parsed_sentence.text, section=parsed_sentence.section or ""))
                for pk in todo for parsed_sentence in parsed[pk].sentences]
        Sentence.objects.bulk_create([row for _, _, row in rows])
        findings = []
        for _, parsed_sentence, row in rows:
            for index, finding in enumerate(parsed_sentence.findings):
                data = finding.to_dict()
                findings.append(Finding(
                    sentence=row, index=index, organ=finding.organ or "", laterality=finding.laterality or "",
                    clock=finding.clock or "", quadrant=finding.quadrant or "",
                    distance_from_nipple_cm=finding.distance_from_nipple_cm, size_mm=finding.size_mm or [],
                    lesion=finding.lesion or "", negated=finding.negated, uncertain=finding.uncertain,
                    attributes=data["attributes"], assessment=data["assessment"], data=data,
                ))
        Finding.objects.bulk_create(findings)
        if manual:
            by_text = {(pk, row.text): row for pk, _, row in rows}
            Alignment.objects.bulk_create([
                Alignment(sentence=by_text[pk, m["sentence__text"]], image_id=m["image_id"],
                          region_id=m["region_id"], linked=m["linked"], created_by_id=m["created_by_id"],
                          score=m["score"], source=Alignment.Source.MANUAL)
                for pk, moved in manual.items() for m in moved if (pk, m["sentence__text"]) in by_text
            ])
    result.update(stored(list(parsed)))
    return {pk: result.get(pk, []) for pk in by_id}


# ---------------------------------------------------------------------------------------------- inputs


def _finding_inputs(sentences: list[Sentence], lexicon_system: str) -> tuple[list[matching.FindingInput], dict]:
    inputs, rows = [], {}
    for sentence in sentences:
        for finding in sentence.findings.all():
            data = finding.data or {}
            stated = matching.stated_values(data.get("attributes", []), lexicon=lexicon_system)
            key = f"s{sentence.index}f{finding.index}"
            start, end = data.get("start", sentence.start), data.get("end", sentence.end)
            inputs.append(matching.FindingInput(
                key=key, sentence_index=sentence.index, start=start, end=end, organ=data.get("organ"),
                laterality=data.get("laterality"), clock=data.get("clock"), quadrant=data.get("quadrant"),
                distance_cm=data.get("distance_from_nipple_cm"), size_mm=tuple(data.get("size_mm") or ()),
                site=tuple(data.get("site") or ()), section=sentence.section or None,
                lesion=data.get("lesion"), ordinal=matching.ordinal_of(sentence.text),
                attributes={k: frozenset(v) for k, v in stated.asserted.items()},
                negated_attributes={k: frozenset(v) for k, v in stated.denied.items()},
                assessment=data.get("assessment"), negated=bool(data.get("negated")),
                uncertain=bool(data.get("uncertain")), hypothetical=bool(data.get("hypothetical")),
                historical=bool(data.get("historical")),
            ))
            rows[key] = (sentence, finding)
    return matching.findings_merge_continuations(inputs), rows


def _source_name(region: Region) -> str:
    if region.source == Region.Source.READER:
        return region.author.username if region.author else f"reader-{region.author_id}"
    if region.source == Region.Source.IMPORT:
        return f"import:{region.source_author or 'import'}"
    return matching.CONSENSUS


def _region_values(region: Region) -> dict[str, frozenset[str]]:
    return {k: frozenset([v] if isinstance(v, str) else v) for k, v in (region.attributes or {}).items()}


def lesion_input(*, key: str, source: str, regions: list[Region], study: Study) -> matching.LesionInput:
    """One lesion as the matcher sees it: the regions that draw it (one per image, first one's image
    giving the body marker), their tags, longest axis and shapes; the organ from the tags, else the
    study's body part. Precondition: ``regions`` is not empty, their images and ``study.dataset.lexicon``
    are loaded."""
    first = regions[0]
    marker = matching.body_marker_parse(first.image.body_marker)
    attributes: dict[str, set] = defaultdict(set)
    for region in regions:
        for name, values in _region_values(region).items():
            attributes[name].update(values)
    organ_code = next(iter(attributes.get("organ_level", ())), None)
    lengths = [r.long_axis_mm for r in regions if r.long_axis_mm]
    return matching.LesionInput(
        key=key, source=source, region_ids=tuple(r.pk for r in regions),
        image_ids=tuple(dict.fromkeys(r.image_id for r in regions)),
        laterality=first.image.laterality or marker.get("laterality"), clock=marker.get("clock"),
        distance_cm=marker.get("distance_cm"), view=first.image.view or marker.get("view"),
        site=tuple(filter(None, [marker.get("site")])),
        organ=_organ_labels(study.dataset.lexicon).get(organ_code) or study.body_part or None,
        long_axis_mm=max(lengths) if lengths else None, label=first.label,
        ordinal=matching.ordinal_of(first.lesion_key), attributes={k: frozenset(v) for k, v in attributes.items()},
        shapes=tuple(dict.fromkeys(r.shape for r in regions)),
    )


def _organ_labels(lexicon) -> dict[str, str]:
    for attribute in lexicon.content["attributes"]:
        if attribute["code"] == "organ_level":
            return {v["code"]: v["label"] for v in attribute["values"]}
    return {}


def _lesion_inputs(study: Study, regions: list[Region]) -> list[matching.LesionInput]:
    groups: dict[str, list[Region]] = defaultdict(list)
    for region in regions:
        if region.shape == "point":
            continue
        groups[f"{_source_name(region)}:{region.lesion_key or f'r{region.pk}'}"].append(region)
    return [lesion_input(key=key, source=_source_name(members[0]), regions=members, study=study)
            for key, members in groups.items()]


# ---------------------------------------------------------------------------------------------- aligning


@dataclass
class _StudyRun:
    """One claimed study's inputs, read together with those of the other studies of its batch."""

    study: Study
    state: StudyAlignmentState
    report: Report | None = None
    sentences: list[Sentence] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    manual: list[Alignment] = field(default_factory=list)
    assignments: list[tuple] = field(default_factory=list)  # (id, image id, status, annotator username)
    image_ids: list[int] = field(default_factory=list)
    input_hash: str = ""


def _claim(study_ids: list[int], worker: str) -> dict[int, StudyAlignmentState]:
    """Take the studies for this worker: one conditional UPDATE, so two workers never align a study at
    once. A claim older than CLAIM_TIMEOUT is a worker that died and may be taken over. Returns the
    state rows of the studies taken (their input hash and last run as before the claim); a study
    another worker holds is not among them."""
    have = set(StudyAlignmentState.objects.filter(study_id__in=study_ids).values_list("study_id", flat=True))
    if len(have) < len(study_ids):
        StudyAlignmentState.objects.bulk_create(
            [StudyAlignmentState(study_id=pk) for pk in study_ids if pk not in have], ignore_conflicts=True)
    now = timezone.now()
    claim = f"{worker[:111]}#{uuid.uuid4().hex[:16]}"  # this call's own mark: which rows it took
    StudyAlignmentState.objects.filter(study_id__in=study_ids).filter(
        ~Q(status=StudyAlignmentState.Status.RUNNING) | Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    ).update(status=StudyAlignmentState.Status.RUNNING, claimed_by=claim, claimed_at=now)
    return {state.study_id: state for state in StudyAlignmentState.objects.filter(
        study_id__in=study_ids, status=StudyAlignmentState.Status.RUNNING, claimed_by=claim)}


def _runs_load(studies: dict[int, Study], states: dict[int, StudyAlignmentState]) -> list[_StudyRun]:
    """The inputs of the claimed studies, one query per table for all of them; each study's report
    parsed if needed (``reports_parse``)."""
    runs = {pk: _StudyRun(study=studies[pk], state=state) for pk, state in states.items()}
    ids = list(runs)
    for report in Report.objects.filter(study_id__in=ids):
        report.study = runs[report.study_id].study  # its dataset and lexicon are loaded already
        runs[report.study_id].report = report
    parsed = reports_parse(reports=[run.report for run in runs.values() if run.report is not None])
    for run in runs.values():
        if run.report is not None:
            run.sentences = parsed[run.report.pk]
    # Regions that count as annotation: submitted readings, imports and the consensus. A join, not
    # ``assignment__in=<subquery>``: PostgreSQL plans the latter as a scan per row.
    for region in (Region.objects.filter(image__study_id__in=ids, is_deleted=False)
                   .filter(Q(source__in=[Region.Source.IMPORT, Region.Source.CONSENSUS])
                           | Q(assignment__status=Assignment.Status.SUBMITTED))
                   .select_related("author", "image").order_by("id")):
        runs[region.image.study_id].regions.append(region)
    for alignment in (Alignment.objects.filter(image__study_id__in=ids, source=Alignment.Source.MANUAL)
                      .annotate(study_of=F("image__study_id")).order_by("id")):
        runs[alignment.study_of].manual.append(alignment)
    for *assignment, study_id in (Assignment.objects.filter(image__study_id__in=ids).order_by("id").values_list(
            "id", "image_id", "status", "annotator__username", "image__study_id")):
        runs[study_id].assignments.append(tuple(assignment))
    for study_id, image_id in Image.objects.filter(study_id__in=ids).order_by("id").values_list("study_id", "id"):
        runs[study_id].image_ids.append(image_id)
    for run in runs.values():
        run.input_hash = _digest({
            "report": [run.report.pk, run.report.version] if run.report else None, "pipeline": parse_version(),
            "regions": [(r.pk, r.version) for r in run.regions],
            "manual": [(m.pk, m.sentence_id, m.region_id, m.linked) for m in run.manual],
            "submitted": sorted(a[0] for a in run.assignments if a[2] == Assignment.Status.SUBMITTED),
            "lexicon": [run.study.dataset.lexicon.system, run.study.dataset.lexicon.version],
        })
    return list(runs.values())


def study_align(*, study_id: int, worker: str = "inline") -> str:
    """Align one study. Returns "aligned", "unchanged" (inputs as last time: nothing written),
    "busy" (another worker holds it) or "gone" (the study was deleted).

    Precondition: none — the report is parsed here if needed. Promises: automatic alignments and open
    disagreements reflect the current report, regions and pipeline; manual alignments and resolved
    disagreements whose inputs did not change are kept. On failure the study's state row says FAILED
    with the error, and the error is raised.
    """
    return _studies_align([study_id], worker)[study_id]


def studies_align(*, study_ids: list[int], worker: str = "inline",
                  reraise: tuple[type[BaseException], ...] = ()) -> dict[str, int]:
    """Align many studies as ``study_align`` does, with a few queries and one transaction for the lot
    instead of some thirty queries and a commit per study — what an import's chunk needs. When the lot
    fails, each study is aligned again alone, so a bad study fails alone (FAILED on its state row) and
    the others go on, unless its error is one of ``reraise`` (a lost connection: the caller retries
    the lot). Returns the number of studies per outcome ("aligned", "unchanged", "busy", "gone",
    "failed")."""
    outcomes: dict[str, int] = defaultdict(int)
    try:
        for status in _studies_align(list(dict.fromkeys(study_ids)), worker).values():
            outcomes[status] += 1
        return dict(outcomes)
    except Exception:  # noqa: BLE001 — find the study at fault
        log.warning("alignment of %d studies together failed; aligning them one by one", len(study_ids),
                    exc_info=True)
    outcomes.clear()
    for study_id in dict.fromkeys(study_ids):
        try:
            outcomes[study_align(study_id=study_id, worker=worker)] += 1
        except reraise:
            raise
        except Exception:  # noqa: BLE001 — one bad study must not cost the others (its row says FAILED)
            log.warning("alignment of study %s failed", study_id, exc_info=True)
            outcomes["failed"] += 1
    return dict(outcomes)


def _studies_align(study_ids: list[int], worker: str) -> dict[int, str]:
    """Claim, read, match and record ``study_ids``; the outcome of each (see ``study_align``). Any
    error marks every study it claimed FAILED and is raised."""
    studies = {study.pk: study for study in Study.objects.filter(pk__in=study_ids)}
    # Each dataset (and its lexicon, a large document) read once, not once per study.
    datasets = Dataset.objects.select_related("lexicon").in_bulk({study.dataset_id for study in studies.values()})
    for study in studies.values():
        study.dataset = datasets[study.dataset_id]
    outcome = {pk: "gone" for pk in study_ids if pk not in studies}
    states = _claim(list(studies), worker) if studies else {}
    outcome.update({pk: "busy" for pk in studies if pk not in states})
    if not states:
        return outcome
    try:
        runs = _runs_load(studies, states)
        unchanged = {run.study.pk for run in runs if run.state.input_hash == run.input_hash and run.state.aligned_at}
        if unchanged:
            StudyAlignmentState.objects.filter(study_id__in=list(unchanged)).update(
                status=StudyAlignmentState.Status.DONE, checked_at=timezone.now(), claimed_by="")
            outcome.update({pk: "unchanged" for pk in unchanged})
        changed = [run for run in runs if run.study.pk not in unchanged]
        if changed:
            with transaction.atomic():
                _align_and_record(changed)
                now = timezone.now()
                for run in changed:
                    run.state.input_hash = run.input_hash
                StudyAlignmentState.objects.bulk_update([run.state for run in changed], ["input_hash"])
                StudyAlignmentState.objects.filter(study_id__in=[run.study.pk for run in changed]).update(
                    status=StudyAlignmentState.Status.DONE, pipeline_version=parse_version(), aligned_at=now,
                    checked_at=now, runs=F("runs") + 1, claimed_by="", error="")
            outcome.update({run.study.pk: "aligned" for run in changed})
    except Exception as error:
        StudyAlignmentState.objects.filter(study_id__in=list(states)).exclude(
            status=StudyAlignmentState.Status.DONE, claimed_by="").update(
            status=StudyAlignmentState.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000], claimed_by="",
            checked_at=timezone.now())
        raise
    return outcome


def _study_match(run: _StudyRun) -> tuple[matching.StudyMatch, list, dict, dict, dict[int, int]]:
    """Match one study (``matching.study_match``, pure): the result, the finding inputs and rows, the
    lesions by key and each region's image."""
    study, regions, lexicon = run.study, run.regions, run.study.dataset.lexicon
    findings, finding_rows = _finding_inputs(run.sentences, lexicon.system)
    lesions = _lesion_inputs(study, regions)
    reader_regions: dict[int, list[matching.ReaderRegion]] = defaultdict(list)
    for region in regions:
        if region.source == Region.Source.READER:
            reader_regions[region.image_id].append(matching.ReaderRegion(
                region.pk, _source_name(region), region.shape, region.geometry, _region_values(region)))
    readers_of: dict[int, list[str]] = defaultdict(list)
    for _, image_id, status, username in run.assignments:
        if status == Assignment.Status.SUBMITTED:
            readers_of[image_id].append(username)
    result = matching.study_match(matching.StudyInput(
        findings=findings, lesions=lesions, image_ids=run.image_ids,
        reader_regions=reader_regions, readers_of=readers_of,
        fully_read=all(status == Assignment.Status.SUBMITTED for _, _, status, _ in run.assignments),
        single_valued=frozenset(a["code"] for a in lexicon.content["attributes"] if a["cardinality"] == "one"),
        tirads_level_of=lambda points: tirads_level(lexicon_tirads(), points),
        tirads_points_of=(lambda tags: tirads_points(lexicon, tags)) if lexicon.system == "tirads" else None,
    ))
    return result, findings, finding_rows, {lesion.key: lesion for lesion in lesions}, \
        {r.pk: r.image_id for r in regions}


def _align_and_record(runs: list[_StudyRun]) -> None:
    """Match each study and record its links and disagreements: the automatic links of all of them
    replaced with one DELETE and one INSERT, their disagreements read in one query and the new ones
    inserted together. Precondition: inside a transaction; the runs' studies are claimed."""
    ids = [run.study.pk for run in runs]
    Alignment.objects.filter(image__study_id__in=ids, source=Alignment.Source.AUTO).delete()
    existing: dict[int, dict[str, Disagreement]] = defaultdict(dict)
    for disagreement in Disagreement.objects.filter(study_id__in=ids).prefetch_related("regions"):
        existing[disagreement.study_id][disagreement.fingerprint] = disagreement
    links: list[Alignment] = []
    new: list[tuple[Disagreement, tuple[int, ...]]] = []
    stale: list[int] = []
    changes: dict[int, list[int] | None] = {}
    for run in runs:
        result, findings, finding_rows, lesion_by_key, region_image = _study_match(run)
        links += _alignments_of(run, result.matches, findings, finding_rows, lesion_by_key, region_image)
        touched = _disagreements_update(run.study, existing[run.study.pk], result.conflicts, finding_rows,
                                        lesion_by_key, region_image, new, stale)
        # A re-run can open or settle disagreements of an image already adjudicated (or waiting to be); an
        # image whose disagreements did not change keeps its status, so only a change is news.
        if touched is None or touched:
            changes[run.study.pk] = None if touched is None else sorted(touched)
    if changes:
        transaction.on_commit(lambda: disagreements_changed.send(sender=Study, changes=changes))
    Alignment.objects.bulk_create(links)
    if new:
        # one INSERT for the disagreements and one for their regions (PostgreSQL and SQLite return the ids)
        created = Disagreement.objects.bulk_create([d for d, _ in new])
        through = Disagreement.regions.through
        through.objects.bulk_create([
            through(disagreement_id=d.pk, region_id=region_id)
            for d, (_, region_ids) in zip(created, new, strict=True) for region_id in dict.fromkeys(region_ids)
        ])
    if stale:
        Disagreement.objects.filter(pk__in=stale).delete()


def _alignments_of(run: _StudyRun, matches: list[matching.Match], findings: list[matching.FindingInput],
                   finding_rows: dict, lesion_by_key: dict, region_image: dict[int, int]) -> list[Alignment]:
    """The study's automatic links for ``matches``: every sentence a finding spans to every region of
    its lesion. Manual decisions win: an unlink removes the automatic link."""
    finding_by_key = {finding.key: finding for finding in findings}
    unlinked = {(m.sentence_id, m.region_id) for m in run.manual if not m.linked}
    rows, linked = [], set()
    for match in matches:
        finding = finding_by_key[match.finding]
        lesion = lesion_by_key[match.lesion]
        covered = [s for s in run.sentences if s.start < finding.end and s.end > finding.start] or \
            [finding_rows[match.finding][0]]
        for sentence in covered:
            for region_id in lesion.region_ids:
                if (sentence.pk, region_id) in unlinked or (sentence.pk, region_id) in linked:
                    continue
                linked.add((sentence.pk, region_id))
                rows.append(Alignment(
                    finding=finding_rows[match.finding][1], sentence=sentence, image_id=region_image[region_id],
                    region_id=region_id, score=match.score,
                    evidence={**match.evidence, "repeat_mention": match.repeat, "lesion": lesion.key},
                ))
    return rows


def lexicon_tirads():
    """The TI-RADS level table: the report's TR level is checked against it whatever the dataset's
    lexicon, since reports state TR levels in any dataset."""
    return lexicon_load("tirads")


def _disagreements_update(study: Study, existing: dict[str, Disagreement], conflicts, finding_rows, lesion_by_key,
                          region_image, new: list, stale: list[int]) -> set[int] | None:
    """Bring the study's open disagreements (``existing``, by fingerprint) in line with ``conflicts``:
    changed ones are saved here, new ones appended to ``new`` and settled ones' ids to ``stale`` for the
    caller to write with the other studies'. Returns the ids of the images whose disagreements changed
    (``None``: a study-level one changed, which concerns every image)."""
    produced = set()
    touched: set[int] | None = set()

    def touch(image_id: int | None, region_ids) -> None:
        nonlocal touched
        if image_id is None and not region_ids:
            touched = None
        elif touched is not None:
            if image_id is not None:
                touched.add(image_id)
            touched.update(region_image[r] for r in region_ids if r in region_image)

    for conflict in conflicts:
        fingerprint = _digest([conflict.kind, list(conflict.identity)])
        if fingerprint in produced:
            continue
        produced.add(fingerprint)
        input_hash = _digest([conflict.values, list(conflict.region_ids)])
        sentence = finding_rows[conflict.finding][0] if conflict.finding in finding_rows else None
        image_id = conflict.image_id
        if image_id is None and conflict.lesion in lesion_by_key:
            image_id = lesion_by_key[conflict.lesion].image_ids[0]
        current = existing.get(fingerprint)
        if current is None:
            new.append((Disagreement(
                dataset_id=study.dataset_id, study=study, image_id=image_id, sentence=sentence, kind=conflict.kind,
                attribute=conflict.attribute, values=conflict.values, fingerprint=fingerprint, input_hash=input_hash,
            ), tuple(conflict.region_ids)))
            touch(image_id, conflict.region_ids)
        elif current.input_hash != input_hash:
            # Its inputs changed: refresh the values; a resolution made on the old values no longer
            # settles it, so it opens again (the old resolution is kept in its record).
            touch(current.image_id, [r.pk for r in current.regions.all()])
            if current.status != Disagreement.Status.OPEN:
                current.resolution = {"previous": current.resolution, "reopened_at": timezone.now().isoformat()}
                current.status = Disagreement.Status.OPEN
            current.values, current.input_hash, current.sentence, current.image_id = (
                conflict.values, input_hash, sentence, image_id)
            current.save()
            current.regions.set(conflict.region_ids)
            touch(image_id, conflict.region_ids)
        elif current.sentence_id != (sentence.pk if sentence else None):
            Disagreement.objects.filter(pk=current.pk).update(sentence=sentence)
    for fingerprint, disagreement in existing.items():
        if fingerprint not in produced and disagreement.status == Disagreement.Status.OPEN:
            touch(disagreement.image_id, [r.pk for r in disagreement.regions.all()])
            stale.append(disagreement.pk)
    return touched


# ---------------------------------------------------------------------------------------------- dataset runs


def dataset_align_start(*, dataset: Dataset, created_by=None) -> AlignmentRun:
    total = Study.objects.filter(dataset=dataset).count()
    return AlignmentRun.objects.create(dataset=dataset, total=total, created_by=created_by,
                                       status=AlignmentRun.Status.RUNNING)


def alignment_run_refresh(*, run_id: int) -> AlignmentRun | None:
    """Recount a run's progress from the studies themselves (so a redelivered chunk never counts twice)
    and close it when every study has been looked at since it started."""
    run = AlignmentRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    states = StudyAlignmentState.objects.filter(study__dataset_id=run.dataset_id, checked_at__gte=run.created_at)
    done = states.filter(status=StudyAlignmentState.Status.DONE).count()
    failed = states.filter(status=StudyAlignmentState.Status.FAILED).count()
    finished = done + failed >= run.total
    AlignmentRun.objects.filter(pk=run.pk).update(
        done=done, failed=failed,
        **({"status": AlignmentRun.Status.DONE if not failed else AlignmentRun.Status.FAILED,
            "finished_at": timezone.now()} if finished and run.status == AlignmentRun.Status.RUNNING else {}))
    run.refresh_from_db()
    return run


def dataset_study_chunks(*, dataset_id: int, size: int = 50) -> list[list[int]]:
    ids = list(Study.objects.filter(dataset_id=dataset_id).order_by("id").values_list("id", flat=True))
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def disagreement_counts(*, dataset: Dataset, status: str = Disagreement.Status.OPEN) -> dict[str, int]:
    counts = {kind: 0 for kind in Disagreement.Kind.values}
    rows = Disagreement.objects.filter(dataset=dataset, status=status).values("kind").annotate(n=Count("id"))
    counts.update({row["kind"]: row["n"] for row in rows})
    return counts


# ---------------------------------------------------------------------------------------------- manual alignment
# A reviewer's own decisions about one (sentence, region) pair. Callers check permission first
# (``annotation.selectors.region_get_for_user(..., roles=REVIEW_ROLES)`` and the sentence's
# study through ``study_get_for_user``); these functions only check that the pair makes sense.


def alignment_manual_set(*, sentence: Sentence, region: Region, linked: bool, actor) -> Alignment:
    """Record the reviewer's decision for (sentence, region): ``linked=True`` links them whatever the
    matcher thinks, ``linked=False`` forbids the automatic link. Replaces an earlier decision for the
    same pair, then queues the study's re-alignment so automatic links and disagreements follow.

    Preconditions: the caller may review the region's dataset. Raises ``ValidationError`` when the
    sentence and the region belong to different studies or the region is deleted.
    """
    from django.core.exceptions import ValidationError

    study_id = region.image.study_id
    if sentence.report.study_id != study_id:
        raise ValidationError({"sentence": "the sentence and the region belong to different studies"})
    if region.is_deleted:
        raise ValidationError({"region": "the region was deleted"})
    with transaction.atomic():
        Alignment.objects.filter(sentence=sentence, region=region, source=Alignment.Source.MANUAL).delete()
        # Keep the matcher's score and evidence for a link it also found, so the reviewer's link
        # still says why the pair is plausible; a link the matcher did not find has none.
        auto = Alignment.objects.filter(sentence=sentence, region=region, source=Alignment.Source.AUTO).first()
        finding = auto.finding if auto else sentence.findings.order_by("index").first()
        alignment = Alignment.objects.create(
            sentence=sentence, region=region, image_id=region.image_id, finding=finding, linked=bool(linked),
            source=Alignment.Source.MANUAL, created_by=actor, score=auto.score if auto else 0.0,
            evidence=auto.evidence if auto else {},
        )
        study_align_on_commit(study_id=study_id)
    return alignment


def alignment_manual_clear(*, alignment: Alignment) -> None:
    """Drop a reviewer's decision: the pair goes back to whatever the matcher decides. Precondition:
    ``alignment`` is manual and the caller may review its dataset."""
    from django.core.exceptions import ValidationError

    if alignment.source != Alignment.Source.MANUAL:
        raise ValidationError({"alignment": "only a manual decision can be removed; unlink the pair instead"})
    study_id = alignment.image.study_id
    with transaction.atomic():
        Alignment.objects.filter(pk=alignment.pk).delete()
        study_align_on_commit(study_id=study_id)


def alignment_manual_reset(*, sentence: Sentence, region: Region) -> int:
    """Drop every manual decision on (sentence, region); returns how many there were."""
    decisions = list(Alignment.objects.filter(sentence=sentence, region=region, source=Alignment.Source.MANUAL)
                     .select_related("image"))
    for decision in decisions:
        alignment_manual_clear(alignment=decision)
    return len(decisions)


def study_align_on_commit(*, study_id: int) -> None:
    """Queue the study's parsing and alignment once the current transaction commits (eagerly, in the
    embedded demo), so the job sees the data that triggered it."""
    from .tasks import study_align

    transaction.on_commit(lambda: study_align.delay(study_id))
