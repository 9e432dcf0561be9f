"""A database migrated and filled at the layout before the review, batches and demo apps existed
migrates forward with every row intact: the models moved by state only, no table and no row moved."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# The last migrations of the layout in which annotation held review and the job models.
BEFORE = [("annotation", "0002_review_adjudication"), ("alignment", "0001_initial"), ("review", None),
          ("batches", None)]


def _counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if not t.startswith("django_migrations")]
        counts = {}
        for table in tables:
            cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts


def _fill(apps) -> None:
    """One row of every model of the old layout, through the historical models."""
    model = apps.get_model
    user = model("auth", "User").objects.create(username="reader", password="!")
    lexicon = model("annotation", "Lexicon").objects.create(system="udaf", version="0", name="UDAF", content={},
                                                          sha256="0" * 64)
    dataset = model("annotation", "Dataset").objects.create(name="before", lexicon=lexicon)
    model("annotation", "Membership").objects.create(user=user, dataset=dataset, role="annotator")
    study = model("annotation", "Study").objects.create(dataset=dataset, accession="A1", patient="P1")
    report = model("annotation", "Report").objects.create(study=study, text="Oval mass.", language="en")
    image = model("annotation", "Image").objects.create(study=study, file="images/x.png", width=10, height=10,
                                                        sha256="1" * 64)
    assignment = model("annotation", "Assignment").objects.create(image=image, annotator=user)
    region = model("annotation", "Region").objects.create(image=image, author=user, assignment=assignment,
                                                          shape="point", geometry={"points": [[1, 1]]})
    model("annotation", "RegionRevision").objects.create(region=region, version=1, action="create", shape="point",
                                                         geometry={"points": [[1, 1]]})
    for name in ("ImportJob", "ExportJob"):
        model("annotation", name).objects.create(dataset=dataset, params={"kept": True})
    sentence = model("alignment", "Sentence").objects.create(report=report, report_version=1, pipeline_version="x",
                                                             index=0, start=0, end=10, text="Oval mass.")
    finding = model("alignment", "Finding").objects.create(sentence=sentence, lesion="mass")
    model("alignment", "Alignment").objects.create(finding=finding, sentence=sentence, image=image, region=region)
    disagreement = model("alignment", "Disagreement").objects.create(
        dataset=dataset, study=study, image=image, kind="report_vs_annotation", fingerprint="f")
    model("alignment", "StudyAlignmentState").objects.create(study=study)
    model("alignment", "AlignmentRun").objects.create(dataset=dataset)
    decision = model("annotation", "AdjudicationDecision").objects.create(
        dataset=dataset, image=image, disagreement=disagreement, actor=user, action="comment", comment="kept")
    model("annotation", "LesionConsensus").objects.create(image=image, region=region, not_a_lesion=True,
                                                          decision=decision)
    model("annotation", "DatasetMetrics").objects.create(dataset=dataset, data={"kept": True})


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_old_layout_migrates_forward_with_every_row_intact():
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    executor.loader.build_graph()
    _fill(executor.loader.project_state([node for node in BEFORE if node[1]]).apps)
    before = _counts()
    assert before["annotation_adjudicationdecision"] == 1 and before["annotation_importjob"] == 1

    executor = MigrationExecutor(connection)
    executor.migrate(leaves)
    after = _counts()
    assert {table: after.get(table) for table in before} == before

    # The moved models read the same rows, now as review and batches models.
    from batches.models import ExportJob, ImportJob
    from review.models import AdjudicationDecision, DatasetMetrics, LesionConsensus

    assert AdjudicationDecision.objects.get().comment == "kept"
    assert LesionConsensus.objects.get().decision_id == AdjudicationDecision.objects.get().pk
    assert DatasetMetrics.objects.get().data == {"kept": True}
    assert ImportJob.objects.get().params == ExportJob.objects.get().params == {"kept": True}
