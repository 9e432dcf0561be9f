"""JSON API of the alignment app: thin DRF views over ``alignment.selectors`` and ``services``.
Permission comes from ``annotation.selectors`` (outsider → 404, a role that may not → 403)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors as annotation_selectors
from annotation.permissions import REVIEW_ROLES
from annotation.request_input import StrictInput, id_field

from . import selectors, services
from .models import Alignment, Sentence


class ImageQuery(serializers.Serializer):
    image = id_field(required=False, help_text="only links on this image")


def _image_param(request, study) -> object | None:
    query = ImageQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    image_id = query.validated_data.get("image")
    if image_id is None:
        return None
    image = annotation_selectors.image_get_for_user(user=request.user, image_id=image_id)
    if image.study_id != study.pk:
        raise exceptions.NotFound("No such image in this study.")
    return image


class StudyAlignmentApi(APIView):
    """``GET``: the study's report sentences (start, end, text, section), their findings (the parser's
    data) and the regions each is linked to (region, image, score, evidence, source auto|manual).
    Blind reading applies: an annotator sees links to the regions they may see only. ``?image=ID``
    keeps the links on one image."""

    @extend_schema(parameters=[ImageQuery], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, study_id: int):
        study = annotation_selectors.study_get_for_user(user=request.user, study_id=study_id)
        image = _image_param(request, study)
        sentences = selectors.study_alignment_for_user(user=request.user, study=study, image=image)
        for sentence in sentences:
            sentence.pop("pair", None)
        return Response({"study": study.pk, "sentences": sentences})


class AlignmentOutput(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Alignment
        fields = ["id", "sentence", "finding", "image", "region", "score", "evidence", "source", "linked",
                  "created_by", "created_at"]


def _sentence_get_for_user(*, user, sentence_id: int) -> Sentence:
    sentence = Sentence.objects.select_related("report__study").filter(pk=sentence_id).first()
    if sentence is None:
        raise exceptions.NotFound("No such sentence.")
    annotation_selectors.study_get_for_user(user=user, study_id=sentence.report.study_id, roles=REVIEW_ROLES)
    return sentence


class AlignmentManualApi(APIView):
    """``POST {sentence, region, linked}``: a reviewer's or admin's decision for that pair, replacing an
    earlier one; the study is then re-aligned so automatic links and disagreements follow. Annotators
    get 403, people outside the dataset 404."""

    @extend_schema_serializer(component_name="AlignmentDecision")
    class Input(StrictInput):
        sentence = id_field()
        region = id_field()
        linked = serializers.BooleanField()

    @extend_schema(request=Input, responses={201: AlignmentOutput})
    def post(self, request):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        region = annotation_selectors.region_get_for_user(
            user=request.user, region_id=data.validated_data["region"], roles=REVIEW_ROLES)
        sentence = _sentence_get_for_user(user=request.user, sentence_id=data.validated_data["sentence"])
        alignment = services.alignment_manual_set(
            sentence=sentence, region=region, linked=data.validated_data["linked"], actor=request.user)
        return Response(AlignmentOutput(alignment).data, status=status.HTTP_201_CREATED)


class AlignmentDetailApi(APIView):
    """``GET`` one alignment (reviewers, admins); ``DELETE`` a manual decision: the pair returns to
    whatever the matcher decides."""

    def _get(self, request, alignment_id: int) -> Alignment:
        alignment = Alignment.objects.select_related("image__study", "created_by").filter(pk=alignment_id).first()
        if alignment is None:
            raise exceptions.NotFound("No such alignment.")
        annotation_selectors.study_get_for_user(user=request.user, study_id=alignment.image.study_id,
                                                roles=REVIEW_ROLES)
        return alignment

    @extend_schema(responses={200: AlignmentOutput})
    def get(self, request, alignment_id: int):
        return Response(AlignmentOutput(self._get(request, alignment_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, alignment_id: int):
        services.alignment_manual_clear(alignment=self._get(request, alignment_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegionReportFindingsApi(APIView):
    """``GET``: what the report says about a region, for "apply report findings": the suggested
    attribute values (dataset lexicon only), the sentences and findings they come from, and the basis
    (``aligned`` links, or ``location``: the body marker and the region before any link exists)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, region_id: int):
        region = annotation_selectors.region_get_for_user(user=request.user, region_id=region_id)
        return Response({"region": region.pk, **selectors.region_report_findings(user=request.user, region=region)})
