"""Alignment jobs on a real Celery worker (Redis) against PostgreSQL: triggers, crash recovery,
idempotency."""


import pytest
from django.db import transaction
from django.db.models import Count

from alignment import services, tasks
from alignment.models import AlignmentRun, Disagreement, Sentence, StudyAlignmentState
from annotation import services as annotation_services
from annotation.models import Study
from demo.services import seed_demo
from tests.factories import dataset_make, study_make, wait_until

pytestmark = [pytest.mark.integration]




def test_a_new_report_is_parsed_and_aligned_by_the_worker(celery_worker_process):
    dataset = dataset_make()
    with transaction.atomic():
        study = study_make(dataset)
        annotation_services.report_set(
            study=study, text="Right breast: 1.2 x 0.8 cm hypoechoic nodule at 10 o'clock. No internal vascularity.")
    state = wait_until(lambda: StudyAlignmentState.objects.filter(study=study, status="done").first())
    assert state is not None, "the worker never aligned the study"
    assert Sentence.objects.filter(report__study=study).count() >= 1
    assert state.runs == 1


def test_killing_the_worker_mid_run_still_aligns_every_study_exactly_once(celery_worker_process):
    result = seed_demo(studies=120, seed=21, dataset_name="kill-test", readings=1.0)
    dataset = result.dataset
    run = services.dataset_align_start(dataset=dataset)
    tasks.dataset_align.delay(dataset.pk, run.pk, 6)
    started = wait_until(lambda: StudyAlignmentState.objects.filter(
        study__dataset=dataset, status="done").count() >= 6, timeout=120, interval=0.05)
    assert started, "alignment never started"
    celery_worker_process.kill()
    done_at_kill = StudyAlignmentState.objects.filter(study__dataset=dataset, status="done").count()
    assert done_at_kill < 120, "the run finished before the kill; make it bigger"
    celery_worker_process.start()

    def finished():
        current = services.alignment_run_refresh(run_id=run.pk)
        return current if current.status != AlignmentRun.Status.RUNNING else None

    run = wait_until(finished, timeout=240, interval=1.0)
    assert run is not None and run.status == "done", "the run did not finish after the restart"
    states = StudyAlignmentState.objects.filter(study__dataset=dataset)
    assert states.count() == Study.objects.filter(dataset=dataset).count() == 120
    assert set(states.values_list("runs", flat=True)) == {1}
    duplicates = (Disagreement.objects.filter(dataset=dataset).values("study", "fingerprint")
                  .annotate(n=Count("id")).filter(n__gt=1))
    assert not duplicates.exists()
    before = sorted(Disagreement.objects.filter(dataset=dataset).values_list("fingerprint", "input_hash"))

    # Running the dataset again changes nothing.
    again = services.dataset_align_start(dataset=dataset)
    tasks.dataset_align.delay(dataset.pk, again.pk, 20)
    assert wait_until(lambda: services.alignment_run_refresh(run_id=again.pk).status == "done", timeout=120)
    assert set(states.values_list("runs", flat=True)) == {1}
    assert sorted(Disagreement.objects.filter(dataset=dataset).values_list("fingerprint", "input_hash")) == before
