"""Review pages over HTTP: who may open them (reviewer 200, annotator 403, outsider 404), the queue's
filters and htmx partials, decisions through the form and from the queue, the dashboard and its CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from alignment.models import Disagreement
from annotation.models import Region
from review import adjudication
from review.models import AdjudicationDecision
from tests.factories import user_make
from tests.review.test_adjudication import _make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(django_capture_on_commit_callbacks):
    from django.core.cache import cache

    cache.clear()  # database ids repeat between tests; cached dashboard counts must not
    return _make_case(django_capture_on_commit_callbacks)


def _login(client, user):
    client.force_login(user)
    return client


def test_permission_matrix(client, case):
    disagreement = Disagreement.objects.filter(study=case["study"]).first()
    urls = [reverse("review:queue"), reverse("review:disagreement", args=[disagreement.pk]),
            reverse("review:dashboard", args=[case["dataset"].pk]), reverse("review:dashboard-csv", args=[case["dataset"].pk])]
    _login(client, case["reader1"])
    assert [client.get(url).status_code for url in urls] == [403, 403, 403, 403]
    assert client.post(reverse("review:resolve", args=[disagreement.pk]), {"action": "dismiss"}).status_code == 403
    _login(client, user_make("stranger"))
    assert [client.get(url).status_code for url in urls[1:]] == [404, 404, 404]
    _login(client, case["reviewer"])
    assert [client.get(url).status_code for url in urls] == [200, 200, 200, 200]
    client.logout()
    assert client.get(urls[0]).status_code == 302  # to the login page
    assert Disagreement.objects.get(pk=disagreement.pk).status == "open"


def test_queue_filters_swap_the_list_and_count_per_kind(client, case):
    _login(client, case["reviewer"])
    page = client.get(reverse("review:queue")).content.decode()
    assert 'data-count="total">2<' in page and 'data-count="reader_vs_reader">1<' in page
    partial = client.get(reverse("review:queue"), {"kind": "report_vs_annotation"}, HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert "<html" not in body and body.count('class="review-row"') == 1
    assert 'data-count="report_vs_annotation">1<' in body


def test_form_decision_opens_the_next_disagreement(client, case):
    _login(client, case["reviewer"])
    rva = Disagreement.objects.get(study=case["study"], kind="report_vs_annotation")
    response = client.post(reverse("review:resolve", args=[rva.pk]),
                           {"action": "accept_report", "comment": "seen on cine"})
    assert response.status_code == 302
    assert Disagreement.objects.get(pk=rva.pk).status == "resolved"
    assert Region.objects.filter(image=case["image"], source="consensus").count() == 1
    assert AdjudicationDecision.objects.get(disagreement=rva).comment == "seen on cine"
    page = client.get(reverse("review:disagreement", args=[rva.pk]))
    assert b"Decisions on this image" in page.content and b"seen on cine" in page.content


def test_queue_decision_returns_the_refreshed_list(client, case):
    _login(client, case["reviewer"])
    rvr = Disagreement.objects.get(study=case["study"], kind="reader_vs_reader")
    response = client.post(reverse("review:resolve", args=[rvr.pk]),
                           {"action": "accept_annotation", "side": "reader-b", "from": "queue"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and 'data-count="total">0<' in body  # settled the other one too
    refused = client.post(reverse("review:resolve", args=[rvr.pk]), {"action": "dismiss", "from": "queue"},
                          HTTP_HX_REQUEST="true")
    assert "already resolved" in refused.content.decode()


def test_dashboard_shows_snapshot_and_csv(client, case):
    adjudication.disagreement_resolve(disagreement=Disagreement.objects.get(study=case["study"], kind="reader_vs_reader"),
                                      actor=case["reviewer"], action="accept_annotation", side="reader-a")
    snapshot = adjudication.dataset_metrics_refresh(dataset_id=case["dataset"].pk)
    assert snapshot.data["reader_agreement"]["echogenicity"]["units"] == 1
    assert snapshot.data["reader_agreement"]["echogenicity"]["agreement"] == 0.0
    assert snapshot.data["iou"]["n"] == 1
    assert snapshot.data["consensus_agreement"]["reader-a"]["agreement"] == 1.0
    _login(client, case["reviewer"])
    page = client.get(reverse("review:dashboard", args=[case["dataset"].pk])).content.decode()
    assert "Reader agreement per attribute" in page and 'data-status="adjudicated">1<' in page
    rows = list(csv.reader(io.StringIO(client.get(reverse("review:dashboard-csv", args=[case["dataset"].pk])).content.decode())))
    assert rows[0] == ["section", "key", "measure", "value"]
    assert ["images", "adjudicated", "count", "1"] in rows
    assert any(r[0] == "reader_agreement" and r[1] == "echogenicity" for r in rows)


def test_queue_page_costs_the_same_queries_for_twenty_rows_as_for_two(client, case, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _login(client, case["reviewer"])
    with CaptureQueriesContext(connection) as two_rows:
        assert client.get(reverse("review:queue"), HTTP_HX_REQUEST="true").content.decode().count(
            'class="review-row"') == 2
    template = Disagreement.objects.filter(study=case["study"]).exclude(kind="reader_vs_reader").first()
    regions = list(template.regions.all())
    for number in range(18):
        copy = Disagreement.objects.create(
            dataset=template.dataset, study=template.study, image=template.image, sentence=template.sentence,
            kind=template.kind, attribute=template.attribute, values=template.values,
            fingerprint=f"copy-{number}", input_hash="copy")
        copy.regions.set(regions)
    with django_assert_max_num_queries(len(two_rows)):
        body = client.get(reverse("review:queue"), HTTP_HX_REQUEST="true").content.decode()
    assert body.count('class="review-row"') == 20


def test_the_review_pages_speak_the_reviewers_language(client, case):
    """In Chinese: kinds, sides, lexicon values and the service's refusals are Chinese; the codes in
    links and form values stay as they are."""
    _login(client, case["reviewer"])
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
    queue = client.get(reverse("review:queue"), **zh).content.decode()
    assert "审核队列" in queue and "阅片者之间" in queue and "低回声" in queue and "等回声" in queue
    assert "Reader vs reader" not in queue and "Hypoechoic" not in queue
    assert "kind=reader_vs_reader" in queue

    rvr = Disagreement.objects.get(study=case["study"], kind="reader_vs_reader", attribute="echogenicity")
    page = client.get(reverse("review:disagreement", args=[rvr.pk]), **zh).content.decode()
    assert "采纳 reader-a" in page and '<option value="hypoechoic">低回声</option>' in page
    refused = client.post(reverse("review:resolve", args=[rvr.pk]), {"action": "comment"}, follow=True, **zh)
    assert "请先填写备注。" in refused.content.decode()

    # An assessment the descriptors contradict: the suspicious values in the lexicon's Chinese.
    assessment = Disagreement.objects.create(
        dataset=case["dataset"], study=case["study"], image=case["image"], kind="assessment_inconsistent",
        attribute="birads", values={"report": "3", "suspicious_features": ["irregular"]},
        fingerprint="assessment-test", input_hash="-")
    page = client.get(reverse("review:disagreement", args=[assessment.pk]), **zh).content.decode()
    assert "特征描述提示" in page and "不规则形" in page and ">irregular<" not in page

    english = client.get(reverse("review:queue"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Reader vs reader" in english and "Hypoechoic" in english
