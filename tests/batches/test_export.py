"""Batch export: round trips through every format, status filters, splits, manifest and atomicity; every
written file parsed back; sentences read through the alignment selector; CSV safe in a spreadsheet;
no source file names without ``keep_names``; bad splits refused."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from PIL import Image as PILImage
from pycocotools.coco import COCO

from alignment.models import Alignment, Finding, Sentence
from alignment.nlp import PIPELINE_VERSION
from alignment.selectors import sentences_for_export
from annotation import services
from annotation.lexicons import lexicon_load
from annotation.models import Assignment, Image, Region, Study
from batches import exporting
from batches.exporting import ExportError, ExportOptions, export_job_run, export_run, split_of, split_parse
from batches.importing import ImportOptions, batch_import
from batches.models import ExportJob
from tests.batches.test_import_support import standard_batch
from tests.factories import SQUARE, assignment_make, dataset_make, image_make, study_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(tmp_path):
    dataset = dataset_make(name="round-trip")
    report = batch_import(dataset=dataset, path=standard_batch(tmp_path / "batch"))
    assert not report.errors
    return dataset


def _export(dataset, tmp_path, fmt, **options) -> Path:
    out = tmp_path / f"out-{fmt}"
    export_run(dataset=dataset, out=out, options=ExportOptions(format=fmt, status=options.pop("status", "all"),
                                                               **options))
    return out


def _exported_name(image: Image) -> str:
    """The name an export gives ``image`` without keep_names: accession and position, never its source."""
    return f"images/{image.study.accession}/{image.position:04d}.{image.file.name.rsplit('.', 1)[-1]}"


def _source_image(dataset, source: str) -> Image:
    return Image.objects.select_related("study").get(study__dataset=dataset, original_name=source)


def _published_tags() -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {}
    for attribute in lexicon_load("udaf")["attributes"]:
        for value in attribute["values"]:
            tags.setdefault(value["us365k"]["key"], set()).add(value["us365k"]["tag"])
    return tags


def _region_key(region: Region) -> tuple:
    return (region.shape, json.dumps(region.geometry, sort_keys=True), region.label, region.lesion_key,
            json.dumps(region.attributes, sort_keys=True))


def test_coco_loads_in_pycocotools_and_areas_match_the_imported_regions(imported, tmp_path):
    out = _export(imported, tmp_path, "coco")
    coco = COCO(str(out / "annotations" / "instances.json"))
    area_regions = Region.objects.filter(image__study__dataset=imported, shape__in=["polygon", "rectangle", "ellipse"])
    assert len(coco.getAnnIds()) == area_regions.count() == 4
    assert len(coco.getImgIds()) == Image.objects.filter(study__dataset=imported).count()
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"nodule", "cyst"}
    for region in area_regions:
        annotation = coco.anns[region.pk]
        assert annotation["area"] == pytest.approx(region.area_px)
        assert annotation["iscrowd"] == 0 and annotation["bbox"] == region.bbox
        assert annotation["attributes"] == region.attributes
        rasterised = int(coco.annToMask(annotation).sum())
        assert rasterised == pytest.approx(region.area_px, rel=0.1)  # pixels vs exact polygon area


def test_reimporting_the_coco_export_reproduces_the_regions(imported, tmp_path):
    archive = tmp_path / "coco.zip"
    export_run(dataset=imported, out=archive, options=ExportOptions(format="coco", status="all", include_images=True))
    copy = dataset_make(name="round-trip-copy")
    report = batch_import(dataset=copy, path=archive, options=ImportOptions(format="coco"))
    assert not report.errors, report.errors
    original = Counter(_region_key(r) for r in Region.objects.filter(image__study__dataset=imported)
                       .exclude(shape__in=["line", "point"]))
    again = Counter(_region_key(r) for r in Region.objects.filter(image__study__dataset=copy))
    assert again == original
    assert set(Study.objects.filter(dataset=copy).values_list("accession", "patient")) <= set(
        Study.objects.filter(dataset=imported).values_list("accession", "patient"))
    assert batch_import(dataset=copy, path=archive, options=ImportOptions(format="coco")).counts["regions_created"] == 0


def test_us365k_records_use_only_the_published_tag_strings(imported, tmp_path):
    records = json.loads((_export(imported, tmp_path, "us365k") / "us365k.json").read_text())
    published = _published_tags()
    assert len(records) == Image.objects.filter(study__dataset=imported).count()
    for record in records:
        assert set(exporting.US365K_KEYS) <= set(record) and record["media_name"]
        for key in exporting.US365K_KEYS:
            values = record[key] if isinstance(record[key], list) else [record[key]] if record[key] else []
            assert set(values) <= published[key], (key, values)
    first = next(r for r in records if r["media_name"] == _exported_name(_source_image(imported, "images/0001_1.jpg")))
    assert (first["Diagnosis"], first["Organ_level"], first["Body_system_level"], first["Shape"]) == (
        "nodule", "Thyroid gland", "Head and Neck", "oval")
    assert first["text"].startswith("Right lobe")


def test_us365k_maps_tirads_values_to_the_published_tags(tmp_path):
    dataset = dataset_make(name="tirads-set", lexicon="tirads")
    image = image_make(study_make(dataset, report="Solid hypoechoic nodule."))
    services.region_create(image=image, author=None, shape="polygon", geometry=SQUARE, source="import",
                           attributes={"composition": "solid_or_almost_completely_solid",
                                       "echogenicity": "very_hypoechoic", "margin": "smooth",
                                       "echogenic_foci": ["punctate_echogenic_foci"]})
    records = json.loads((_export(dataset, tmp_path, "us365k") / "us365k.json").read_text())
    assert {key: records[0][key] for key in exporting.US365K_KEYS} == {
        "Diagnosis": "nodule", "Body_system_level": "Head and Neck", "Organ_level": "Thyroid gland",
        "Shape": None, "Margins": "well-defined", "Echogenicity": "hypoechoic",
        "InternalCharacteristics": ["solid components", "calcifications"], "PosteriorAcoustics": None,
        "Vascularity": None}


def test_jsonl_pairs_carry_report_regions_and_the_regions_each_sentence_is_aligned_to(imported, tmp_path):
    study = Study.objects.get(dataset=imported, accession="ACC-0001")
    image = study.images.get(original_name="images/0001_1.jpg")
    region = image.regions.get(source_id="src-1")
    other = study.images.get(original_name="images/0001_2.jpg")
    sentence = Sentence.objects.create(report=study.report, report_version=study.report.version,
                                       pipeline_version="1.0.0", index=0, start=0, end=43, text=study.report.text)
    Alignment.objects.create(sentence=sentence, image=image, region=region, score=0.9)
    Alignment.objects.create(sentence=sentence, image=other, region=other.regions.first(), score=0.4, linked=False,
                             source="manual")
    lines = [json.loads(line) for line in (_export(imported, tmp_path, "jsonl") / "pairs.jsonl").open()]
    assert len(lines) == Image.objects.filter(study__dataset=imported).count()
    first = next(line for line in lines if line["image"] == _exported_name(image))
    assert first["study"] == "ACC-0001" and first["patient"] == "P-0001" and first["report"] == study.report.text
    polygon = next(r for r in first["regions"] if r["id"] == "src-1")
    assert polygon["points"] == region.geometry["points"] and polygon["bbox"] == region.bbox
    assert polygon["lesion"] == "L1" and polygon["attributes"] == region.attributes
    assert first["sentences"] == [{"index": 0, "start": 0, "end": 43, "text": study.report.text, "findings": [],
                                   "regions": ["src-1"]}]
    second = next(line for line in lines if line["image"] == _exported_name(other))
    assert second["sentences"][0]["regions"] == []  # a reviewer's unlink wins


def test_csv_has_one_row_per_region_and_a_uniquely_named_column_per_attribute(imported, tmp_path):
    with (_export(imported, tmp_path, "csv") / "regions.csv").open(newline="") as handle:
        header = next(csv.reader(handle))
        handle.seek(0)
        rows = list(csv.DictReader(handle))
    assert len(header) == len(set(header)), [name for name, n in Counter(header).items() if n > 1]
    assert len(rows) == Region.objects.filter(image__study__dataset=imported).count()
    codes = [a["code"] for a in imported.lexicon.content["attributes"]]
    assert "shape" in codes  # the lexicon's own "shape" would have collided with the region's shape
    assert {f"attr_{code}" for code in codes} <= set(header)
    row = next(r for r in rows if r["region_id"] == "src-1")
    assert (row["attr_echogenicity"], row["attr_organ_level"], row["lesion"]) == ("hypoechoic", "thyroid_gland", "L1")
    assert row["shape"] == "polygon"


def test_csv_cells_that_would_run_as_formulas_are_neutralised_but_numbers_stay_numbers(tmp_path):
    dataset = dataset_make(name="csv-injection")
    image = image_make(study_make(dataset, accession="=cmd|' /C calc'!A0", patient="@SUM(1+1)"))
    region = services.region_create(image=image, author=None, shape="polygon", geometry=SQUARE, source="import",
                                    label="=HYPERLINK(\"http://evil.example\")", lesion_key="-2+3",
                                    attributes={"echogenicity": "hypoechoic"})
    Region.objects.filter(pk=region.pk).update(source_author="\tevil", source_id="+1", bbox=[-3.25, 4.0, 10.0, 5.5],
                                               attributes={"echogenicity": "\rcarriage", "margins": "-3.2"})
    out = _export(dataset, tmp_path, "csv")
    with (out / "regions.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["label"] == "'=HYPERLINK(\"http://evil.example\")" and row["lesion"] == "'-2+3"
    assert (row["study"], row["patient"], row["author"], row["region_id"]) == (
        "'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'\tevil", "'+1")
    assert (row["attr_echogenicity"], row["attr_margins"]) == ("'\rcarriage", "'-3.2")  # text, though it reads as a number
    assert (row["bbox_x"], row["bbox_y"]) == ("-3.25", "4.0")  # a number column keeps its sign
    assert all(not value.startswith(("=", "+", "-", "@", "\t", "\r")) for name, value in row.items()
               if not name.startswith("bbox_"))
    layout = json.loads((out / "manifest.json").read_text())["layout"]
    assert "attr_" in layout["csv_attribute_columns"] and "'" in layout["csv_text_cells"]


def test_masks_paint_each_label_with_its_legend_value(imported, tmp_path):
    out = _export(imported, tmp_path, "masks")
    legend = {c["label"]: c["value"] for c in json.loads((out / "legend.json").read_text())["classes"]}
    name = _exported_name(_source_image(imported, "images/0001_1.jpg"))
    mask = np.array(PILImage.open(out / "masks" / (name.removeprefix("images/").rsplit(".", 1)[0] + ".png")))
    assert mask.shape == (240, 320)
    assert mask[35, 60] == legend["nodule"] and mask[200, 10] == 0
    assert len(list((out / "masks").rglob("*.png"))) == Image.objects.filter(study__dataset=imported).count()


def test_manifest_lists_versions_filters_counts_and_the_sha256_of_every_file(imported, tmp_path):
    out = _export(imported, tmp_path, "coco", include_images=True, split=(0.5, 0.5), seed=7)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "round-trip"
    assert manifest["filters"] == {"status": "all", "split": [0.5, 0.5], "seed": 7, "include_images": True,
                                   "keep_names": False}
    assert manifest["lexicon"]["system"] == "udaf" and manifest["lexicon"]["version"]
    assert "pipeline_version" in manifest and manifest["snapshot_at"]
    assert manifest["counts"]["images"] == 9
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    for name, facts in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == facts["sha256"]


def test_splits_are_by_patient_reproducible_and_near_the_asked_proportions():
    patients = [f"P-{n:05d}" for n in range(3000)]
    split = (0.8, 0.1, 0.1)
    first = [split_of(p, split=split, seed=42) for p in patients]
    assert first == [split_of(p, split=split, seed=42) for p in patients]
    assert first != [split_of(p, split=split, seed=43) for p in patients]
    shares = Counter(first)
    assert abs(shares["train"] / 3000 - 0.8) < 0.03 and abs(shares["test"] / 3000 - 0.1) < 0.03


def test_no_patient_is_in_two_splits_of_an_export(tmp_path):
    dataset = dataset_make(name="split-set")
    for n in range(40):
        study = study_make(dataset, patient=f"P-{n % 15}", report="Nodule.")
        image = image_make(study)
        services.region_create(image=image, author=None, shape="polygon", geometry=SQUARE, source="import")
    out = _export(dataset, tmp_path, "jsonl", split=(0.6, 0.2, 0.2), seed=3)
    by_patient: dict[str, set] = {}
    for line in (out / "pairs.jsonl").open():
        record = json.loads(line)
        by_patient.setdefault(record["patient"], set()).add(record["split"])
    assert len(by_patient) == 15 and all(len(splits) == 1 for splits in by_patient.values())


def test_status_filters_pick_consensus_or_submitted_readings_plus_imports(tmp_path):
    dataset = dataset_make(name="status-set")
    reader, slow = user_make(), user_make()
    adjudicated = image_make(study_make(dataset, patient="P-1"))
    Image.objects.filter(pk=adjudicated.pk).update(status="adjudicated")
    services.region_create(image=adjudicated, author=None, shape="polygon", geometry=SQUARE, source="consensus",
                           label="consensus-lesion")
    other = image_make(study_make(dataset, patient="P-2"))
    done = assignment_make(other, reader)
    services.region_create(image=other, author=reader, shape="polygon", geometry=SQUARE, assignment=done,
                           label="submitted-lesion")
    Assignment.objects.filter(pk=done.pk).update(status="submitted")
    pending = assignment_make(other, slow)
    services.region_create(image=other, author=slow, shape="polygon", geometry=SQUARE, assignment=pending,
                           label="draft-lesion")
    services.region_create(image=other, author=None, shape="polygon", geometry=SQUARE, source="import",
                           label="imported-lesion")
    image_make(study_make(dataset, patient="P-3"))  # nobody has read it yet

    def labels(status: str) -> tuple[set, int]:
        out = tmp_path / status
        export_run(dataset=dataset, out=out, options=ExportOptions(format="jsonl", status=status))
        lines = [json.loads(line) for line in (out / "pairs.jsonl").open()]
        return {r["label"] for line in lines for r in line["regions"]}, len(lines)

    assert labels("adjudicated") == ({"consensus-lesion"}, 1)
    assert labels("submitted") == ({"submitted-lesion", "imported-lesion"}, 1)
    assert labels("all") == ({"consensus-lesion", "submitted-lesion", "draft-lesion", "imported-lesion"}, 3)


def test_a_failed_export_leaves_the_previous_output_untouched_and_no_partial_files(imported, tmp_path, monkeypatch):
    out = tmp_path / "stable.zip"
    export_run(dataset=imported, out=out, options=ExportOptions(format="jsonl", status="all"))
    before = out.read_bytes()

    def explode(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exporting._HashingWriter, "close", explode)
    with pytest.raises(RuntimeError):
        export_run(dataset=imported, out=out, options=ExportOptions(format="jsonl", status="all"))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"manifest.json", "pairs.jsonl"}


def test_export_command_writes_a_zip_with_the_images(imported, tmp_path):
    out = tmp_path / "export.zip"
    call_command("export_batch", "--dataset", "round-trip", "--format", "coco", "--out", str(out), "--status", "all",
                 "--split", "0.8,0.1,0.1", "--seed", "42", "--include-images")
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
    assert "manifest.json" in names and any(n.startswith("annotations/instances_") for n in names)
    assert sum(1 for n in names if n.startswith("images/")) == 9


def _parse_back(path: Path) -> int:
    """Read one exported file the way its users will; returns how many records it holds."""
    name = path.name
    if name == "manifest.json" or name == "legend.json":
        return len(json.loads(path.read_text(encoding="utf-8")))
    if path.parent.name == "annotations":
        return len(COCO(str(path)).getImgIds())
    if name == "pairs.jsonl":
        with path.open(encoding="utf-8") as handle:
            return sum(1 for line in handle if json.loads(line))
    if name == "us365k.json":
        return len(json.loads(path.read_text(encoding="utf-8")))
    if name == "regions.csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    with PILImage.open(path) as image:  # masks and copied images
        image.load()
        return 1


@pytest.mark.parametrize("fmt", exporting.FORMATS)
def test_every_file_of_every_format_parses_back(imported, tmp_path, fmt):
    _tricky_dataset(imported)
    out = _export(imported, tmp_path, fmt, split=(0.5, 0.3, 0.2), include_images=fmt == "coco")
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.relative_to(out).as_posix() for p in files} == set(manifest["files"]) | {"manifest.json"}
    assert all(_parse_back(path) for path in files)


def _tricky_dataset(imported) -> Sentence:
    """Add to the round-trip set: sentences of two parses with findings, engine and manual links, a
    deleted region, odd text, and source names that must not leave the building. Returns the first
    sentence of the current parse."""
    study = Study.objects.get(dataset=imported, accession="ACC-0001")
    image = study.images.get(original_name="images/0001_1.jpg")
    old = Sentence.objects.create(report=study.report, report_version=study.report.version, pipeline_version="0.9",
                                  index=0, start=0, end=5, text="old")
    first = Sentence.objects.create(report=study.report, report_version=study.report.version,
                                    pipeline_version=PIPELINE_VERSION, index=0, start=0, end=10,
                                    text='Right "lobe"\n\t\\')
    second = Sentence.objects.create(report=study.report, report_version=study.report.version,
                                     pipeline_version=PIPELINE_VERSION, index=1, start=11, end=43, text="结节 ☃")
    # A parse newer by name than this pipeline's: the current pipeline's parse still wins.
    Sentence.objects.create(report=study.report, report_version=study.report.version, pipeline_version="9.9.9",
                            index=0, start=0, end=3, text="future")
    Finding.objects.create(sentence=first, index=0, organ="thyroid", lesion="nodule", size_mm=[12.0, 8.5],
                           distance_from_nipple_cm=3.0, attributes=[{"code": "echogenicity", "value": "hypo"}],
                           assessment={"system": "tirads", "category": "TR4"})
    Finding.objects.create(sentence=first, index=1, negated=True, distance_from_nipple_cm=0.1 + 0.2)
    regions = list(image.regions.order_by("id"))
    Alignment.objects.create(sentence=old, image=image, region=regions[0], score=0.5)
    Alignment.objects.create(sentence=first, image=image, region=regions[0], score=0.9)
    Alignment.objects.create(sentence=first, image=image, region=regions[-1], score=0.9)
    Alignment.objects.create(sentence=first, image=image, region=regions[-1], linked=False, source="manual")
    Alignment.objects.create(sentence=second, image=image, region=regions[-1], score=0.2)
    gone = services.region_create(image=image, author=None, shape="polygon", geometry=SQUARE, source="import")
    Alignment.objects.create(sentence=second, image=image, region=gone, score=0.2)
    services.region_delete(region=gone, actor=None, expected_version=gone.version)
    other = study_make(imported, accession="ACC/../odd name", patient="P-odd", report="Line one.\nLine two.")
    for position, name in enumerate(["DOE^JANE_MRN4455123/US_DOE_JANE_19700101.dcm",
                                     "DOE^JANE_MRN4455123/US_DOE_JANE_19700101.dcm#frame=7", "ü.png"]):
        made = image_make(other, position=position // 2, spacing=None if position % 2 else 0.1)
        Image.objects.filter(pk=made.pk).update(original_name=name)
        services.region_create(image=made, author=None, shape="polygon", geometry=SQUARE, source="import",
                               label="nodule" if position % 2 else "odd \"label\"", lesion_key=f"L{position}",
                               attributes={"echogenicity": "hypoechoic"})
    return first


def test_jsonl_takes_the_current_parse_with_findings_and_the_links_in_force(imported, tmp_path):
    first = _tricky_dataset(imported)
    image = first.alignments.first().image
    lines = [json.loads(line) for line in (_export(imported, tmp_path, "jsonl") / "pairs.jsonl").open()]
    line = next(line for line in lines if line["image"] == _exported_name(image))
    assert [s["text"] for s in line["sentences"]] == ['Right "lobe"\n\t\\', "结节 ☃"]
    findings = line["sentences"][0]["findings"]
    assert findings[0]["size_mm"] == [12.0, 8.5] and findings[0]["assessment"]["category"] == "TR4"
    assert findings[1]["negated"] is True and findings[1]["distance_from_nipple_cm"] == 0.1 + 0.2
    exported = {r.pk: r.source_id or str(r.pk) for r in image.regions.filter(is_deleted=False).order_by("id")}
    first_region, last_region = list(exported.values())[0], list(exported.values())[-1]
    assert line["sentences"][0]["regions"] == [first_region]  # the manual unlink beats the engine's link
    assert line["sentences"][1]["regions"] == [last_region]  # the deleted region's link is gone with it
    elsewhere = [s for other in lines if other["study"] == "ACC-0001" and other is not line for s in other["sentences"]]
    assert elsewhere and all(s["regions"] == [] for s in elsewhere)


def test_sentences_for_export_prefer_this_pipeline_s_parse_else_the_newest(imported):
    study = Study.objects.get(dataset=imported, accession="ACC-0002")
    report = study.report
    for version, text in (("0.1", "older"), ("0.2", "newer")):
        Sentence.objects.create(report=report, report_version=report.version, pipeline_version=version, index=0,
                                start=0, end=3, text=text)
    Sentence.objects.create(report=report, report_version=report.version + 1, pipeline_version=PIPELINE_VERSION,
                            index=0, start=0, end=3, text="of another version of the report")
    studies = Study.objects.filter(pk=study.pk)
    by_report, links = sentences_for_export(studies=studies, image_ids=[])
    assert [s.text for s in by_report[report.pk]] == ["newer"] and links == {}
    Sentence.objects.create(report=report, report_version=report.version, pipeline_version=PIPELINE_VERSION,
                            index=0, start=0, end=3, text="current")
    by_report, _ = sentences_for_export(studies=studies, image_ids=[])
    assert [s.text for s in by_report[report.pk]] == ["current"]


def test_the_exporter_names_no_alignment_table():
    source = Path(exporting.__file__).read_text()
    assert "alignment_" not in source and "from alignment.models" not in source


@pytest.mark.parametrize("fmt", ["coco", "jsonl", "us365k", "csv", "masks"])
def test_exports_name_images_by_accession_and_position_never_by_source_path(imported, tmp_path, fmt):
    _tricky_dataset(imported)
    out = _export(imported, tmp_path, fmt, include_images=fmt == "coco")
    everything = "\n".join(path.relative_to(out).as_posix() + "\n" + (path.read_text(encoding="utf-8")
                           if path.suffix in (".json", ".jsonl", ".csv") else "") for path in out.rglob("*"))
    for leak in ("DOE", "JANE", "MRN4455123", "19700101", "0001_1", "single", "cine"):
        assert leak not in everything, leak
    odd = Study.objects.get(dataset=imported, accession="ACC/../odd name").images.order_by("position", "id")
    expected = ["images/ACC_.._odd_name/0000.png", f"images/ACC_.._odd_name/0000_{odd[1].sha256[:16]}.png",
                "images/ACC_.._odd_name/0001.png"]
    if fmt == "coco":
        assert {n for n in expected} <= {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    if fmt == "jsonl":
        assert expected == [json.loads(line)["image"] for line in (out / "pairs.jsonl").open()
                            if json.loads(line)["study"] == "ACC/../odd name"]


def test_keep_names_keeps_the_source_file_names(imported, tmp_path):
    _tricky_dataset(imported)
    out = tmp_path / "kept"
    call_command("export_batch", "--dataset", "round-trip", "--format", "coco", "--out", str(out), "--status", "all",
                 "--include-images", "--keep-names")
    names = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*")}
    assert {"images/ACC-0001/0001_1.jpg", "images/ACC_.._odd_name/US_DOE_JANE_19700101.png",
            "images/ACC_.._odd_name/US_DOE_JANE_19700101_f0007.png"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters"]["keep_names"] is True and "original" in manifest["layout"]["image_names"]
    coco = COCO(str(out / "annotations" / "instances.json"))
    assert "images/0001_1.jpg" in {image["original_name"] for image in coco.dataset["images"]}


@pytest.mark.parametrize("text", ["nan,nan,nan", "inf,-inf,0", "0.5,nan", "1.5,-0.5", "-0.2,0.6,0.6", "0.5,0.4",
                                  "0.2,0.2,0.2,0.4", "1", "a,b", ""])
def test_a_split_that_is_not_finite_fractions_summing_to_1_is_refused(text):
    with pytest.raises(ExportError, match="split"):
        split_parse(text)


def test_export_run_refuses_a_non_finite_split_and_writes_nothing(imported, tmp_path):
    with pytest.raises(ExportError, match="sum to 1"):
        export_run(dataset=imported, out=tmp_path / "x", options=ExportOptions(format="jsonl",
                                                                                split=(float("nan"),) * 3))
    assert [p.name for p in tmp_path.iterdir()] == ["batch"]  # the imported batch only


def test_an_export_job_with_a_bad_split_fails_with_its_reason_and_is_never_left_running(imported):
    job = ExportJob.objects.create(dataset=imported, params={"format": "coco", "split": "nan,nan,nan"})
    assert export_job_run(job_id=job.pk).status == ExportJob.Status.FAILED
    job.refresh_from_db()
    assert job.finished_at and "sum to 1" in job.errors[0]["reason"]
    other = ExportJob.objects.create(dataset=imported, params={"format": "coco", "split": [0.9, 0.9]})
    assert export_job_run(job_id=other.pk).status == ExportJob.Status.FAILED


def test_segmentation_of_rectangles_is_the_geometry_modules_outline():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        points = [[float(v) if rng.random() < 0.5 else round(float(v), int(rng.integers(0, 5))) for v in pair]
                  for pair in rng.uniform(0, 2000, size=(2, 2))]
        points[0][0] = int(points[0][0]) if rng.random() < 0.3 else points[0][0]
        outline = exporting.geometry_polygon_points("rectangle", {"points": points})
        text = exporting._segmentation_text(SimpleNamespace(shape="rectangle", geometry_text=json.dumps({"points": points})))
        assert json.loads(text) == [[v for point in outline for v in point]]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database-built records exist on PostgreSQL only")
@pytest.mark.parametrize("fmt", ["coco", "jsonl"])
@pytest.mark.parametrize("status, split, keep_names", [("all", None, False), ("all", (0.5, 0.3, 0.2), True),
                                                       ("submitted", (0.5, 0.5), False), ("adjudicated", None, True)])
def test_postgresql_builds_the_same_records_as_the_python_writers(imported, tmp_path, monkeypatch, fmt, status,
                                                                   split, keep_names):
    _tricky_dataset(imported)
    Region.objects.filter(image__study__accession="ACC-0001", label="").update(label="", area_px=12.0)
    copies = []
    copy_rows = exporting._copy_rows
    monkeypatch.setattr(exporting, "_copy_rows", lambda *args: copies.append(args) or copy_rows(*args))
    Image.objects.filter(study__accession="ACC-0001").update(status="adjudicated")
    Region.objects.filter(image__study__accession="ACC-0001", shape="ellipse").update(source="consensus")
    outputs = {}
    for database_records in (True, False):
        out = tmp_path / f"{fmt}-{database_records}"
        manifest = export_run(dataset=imported, out=out, options=ExportOptions(
            format=fmt, status=status, split=split, seed=5, keep_names=keep_names, database_records=database_records))
        files = {}
        for name in json.loads((out / "manifest.json").read_text())["files"]:
            text = (out / name).read_text(encoding="utf-8")
            if fmt == "coco":
                files[name] = json.loads(text)
                files[name]["info"].pop("date_created")
            else:
                files[name] = [json.loads(line) for line in text.splitlines()]
        outputs[database_records] = (files, manifest["counts"])
    assert copies, "the database built no records"
    assert outputs[True] == outputs[False]
    text = json.dumps(outputs[True][0], ensure_ascii=False)
    assert outputs[True][1]["images"] and ("ellipse" in text if status != "submitted" else "polygon" in text)
    if fmt == "jsonl" and status == "all":
        assert '"negated": true' in text and "结节 ☃" in text and "images/ACC_.._odd_name/" in text
