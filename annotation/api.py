"""JSON API of the annotation app: thin DRF views over ``services`` and ``selectors``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from . import permissions, selectors, services
from .models import Assignment, Region, RegionRevision
from .request_input import ID_MAX, StrictInput, id_field
from .services import RegionConflict


def api_exception_handler(exc, context):
    """Turn domain errors into HTTP: Django ``ValidationError`` → 400 with the per-field messages,
    ``RegionConflict`` → 409 with the current region, a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` →
    413 and Django's other refusals of a request (too many fields, ...) → 400, all as JSON rather
    than Django's HTML error page."""
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "The request body is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "The request could not be read."}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RegionConflict):
        return Response(
            {"detail": "This region was changed elsewhere since you loaded it.", "changed": exc.changed,
             "current": RegionOutput(exc.current, context={"request": context.get("request")}).data},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Permission denied.")
    return exception_handler(exc, context)


class MeApi(APIView):
    """Who am I, and what may I do where."""

    class DatasetRoles(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())

    class Output(serializers.Serializer):
        username = serializers.CharField()
        is_staff = serializers.BooleanField()
        datasets = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=inline_serializer("Me", {
        "username": serializers.CharField(), "is_staff": serializers.BooleanField(),
        "datasets": DatasetRoles(many=True)}))
    def get(self, request):
        datasets = [
            {"id": d.pk, "name": d.name,
             "roles": sorted(selectors.dataset_roles(user=request.user, dataset_id=d.pk))}
            for d in selectors.datasets_for_user(user=request.user)
        ]
        return Response(self.Output({"username": request.user.username, "is_staff": request.user.is_staff,
                                     "datasets": datasets}).data)


class RegionOutput(serializers.ModelSerializer):
    """A region as the caller sees it; ``can_edit`` is the permission module's answer for the caller
    (the workspace asks it instead of deciding in JavaScript)."""

    author = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    can_edit = serializers.SerializerMethodField()

    class Meta:
        model = Region
        fields = [
            "id", "image", "author", "source", "source_author", "source_id", "assignment", "shape", "geometry",
            "label", "lesion_key", "attributes", "bbox", "area_px", "area_mm2", "long_axis_mm", "short_axis_mm",
            "version", "created_at", "updated_at", "can_edit",
        ]

    def get_can_edit(self, region: Region) -> bool:
        request = self.context.get("request")
        if request is None:
            return False
        held = self.context.get("held")
        if held is None:
            held = selectors.dataset_roles(user=request.user, dataset_id=region.image.study.dataset_id)
        return permissions.may_edit_region(user=request.user, region=region, held=held)


class RegionListCreateApi(APIView):
    """``GET ?image=ID`` lists the regions of an image the caller may see (blind reading applies);
    ``POST`` creates one on an image assigned to the caller (or any image, for reviewers and admins)."""

    class ListQuery(serializers.Serializer):
        image = id_field(help_text="the image whose regions to list")

    @extend_schema_serializer(component_name="RegionCreate")
    class CreateInput(StrictInput):
        image = id_field()
        # A CharField, not a ChoiceField: the service names the shapes it knows in its message.
        shape = serializers.CharField(help_text=", ".join(Region.Shape.values))
        geometry = serializers.JSONField(help_text='{"points": [[x, y], ...]} in image pixels; an ellipse '
                                                   '{"center": [x, y], "radii": [rx, ry]}')
        attributes = serializers.JSONField(required=False, default=dict)
        label = serializers.CharField(required=False, allow_blank=True, default="lesion", max_length=64)
        lesion_key = serializers.CharField(required=False, allow_blank=True, default="", max_length=32)

    @extend_schema(operation_id="regions_list", parameters=[ListQuery],
                   responses=inline_serializer("RegionList", {"results": RegionOutput(many=True)}))
    def get(self, request):
        query = self.ListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        image = selectors.image_get_for_user(user=request.user, image_id=query.validated_data["image"])
        regions = selectors.regions_visible(user=request.user, image=image).order_by("id")
        held = selectors.dataset_roles(user=request.user, dataset_id=image.study.dataset_id)
        return Response({"results": RegionOutput(regions, many=True, context={"request": request, "held": held}).data})

    @extend_schema(request=CreateInput, responses={201: RegionOutput})
    def post(self, request):
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        image, assignment, held = _image_for_drawing(request, data.validated_data["image"])
        region = services.region_create(
            image=image, author=request.user, assignment=assignment,
            **{k: v for k, v in data.validated_data.items() if k != "image"},
        )
        return Response(RegionOutput(region, context={"request": request, "held": held}).data,
                        status=status.HTTP_201_CREATED)


class RegionDetailApi(APIView):
    """``PATCH`` with ``version`` (the version the client last saw) saves, or answers 409 with the
    region as it now is; ``DELETE ?version=N`` soft-deletes likewise."""

    @extend_schema_serializer(component_name="RegionUpdate")
    class UpdateInput(StrictInput):
        version = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="the version you last saw")
        shape = serializers.CharField(required=False, help_text=", ".join(Region.Shape.values))
        geometry = serializers.JSONField(required=False)
        attributes = serializers.JSONField(required=False)
        label = serializers.CharField(required=False, allow_blank=True, max_length=64)
        lesion_key = serializers.CharField(required=False, allow_blank=True, max_length=32)
        seen = serializers.JSONField(required=False, help_text="the values you last saw of the fields you change")

    class DeleteQuery(serializers.Serializer):
        version = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="the version you last saw")

    def _editable(self, request, region_id: int) -> tuple[Region, bool]:
        """The region and whether the caller may change it even in a closed reading (an admin)."""
        region = selectors.region_get_for_user(user=request.user, region_id=region_id)
        held = selectors.dataset_roles(user=request.user, dataset_id=region.image.study.dataset_id)
        if not permissions.may_edit_region(user=request.user, region=region, held=held):
            if region.author_id != request.user.pk:
                raise exceptions.PermissionDenied("Only the region's author can change it.")
            raise exceptions.PermissionDenied("This reading was submitted; its regions are closed.")
        return region, permissions.may_administer(held)

    @extend_schema(responses=RegionOutput)
    def get(self, request, region_id: int):
        region = selectors.region_get_for_user(user=request.user, region_id=region_id)
        return Response(RegionOutput(region, context={"request": request}).data)

    @extend_schema(request=UpdateInput, responses={200: RegionOutput, 409: OpenApiResponse(
        OpenApiTypes.OBJECT, description="changed elsewhere: the changed fields and the region as it now is")})
    def patch(self, request, region_id: int):
        region, admin = self._editable(request, region_id)
        data = self.UpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k not in ("version", "seen")}
        region = services.region_update(
            region=region, actor=request.user, expected_version=data.validated_data["version"], changes=changes,
            seen=data.validated_data.get("seen"), allow_closed=admin,
        )
        return Response(RegionOutput(region, context={"request": request}).data)

    @extend_schema(parameters=[DeleteQuery], responses={204: None})
    def delete(self, request, region_id: int):
        region, admin = self._editable(request, region_id)
        query = self.DeleteQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        version = query.validated_data["version"]
        services.region_delete(region=region, actor=request.user, expected_version=version, allow_closed=admin)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegionRestoreApi(APIView):
    """``POST`` brings back a region its author deleted (undo), with its id and history intact."""

    @extend_schema(request=None, responses=RegionOutput)
    def post(self, request, region_id: int):
        region = Region.objects.select_related("image__study", "assignment").filter(pk=region_id).first()
        if region is None:
            raise exceptions.NotFound("No deleted region with that id.")
        selectors.image_get_for_user(user=request.user, image_id=region.image_id)
        held = selectors.dataset_roles(user=request.user, dataset_id=region.image.study.dataset_id)
        if not permissions.may_edit_region(user=request.user, region=region, held=held):
            if region.author_id != request.user.pk:
                # Another reader's region is not revealed, deleted or not (blind reading).
                raise exceptions.NotFound("No deleted region with that id.")
            raise exceptions.PermissionDenied("This reading was submitted; its regions are closed.")
        region = services.region_restore(region=region, actor=request.user,
                                         allow_closed=permissions.may_administer(held))
        return Response(RegionOutput(region, context={"request": request}).data)


class RegionHistoryApi(APIView):
    """Who changed what when; reviewers and admins only."""

    @extend_schema_serializer(component_name="RegionRevision")
    class Output(serializers.ModelSerializer):
        actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

        class Meta:
            model = RegionRevision
            fields = ["version", "action", "actor", "changed", "shape", "geometry", "label", "lesion_key",
                      "attributes", "created_at"]

    @extend_schema(responses=inline_serializer("RegionHistory", {"results": Output(many=True)}))
    def get(self, request, region_id: int):
        region = selectors.region_get_for_user(user=request.user, region_id=region_id, roles=permissions.REVIEW_ROLES)
        return Response({"results": self.Output(region.revisions.select_related("actor"), many=True).data})


# ---------------------------------------------------------------------------------------------- workspace
# The reader's queue and submit, over the same selectors and services as the pages.


class AssignmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Assignment.Status.values)
    image = serializers.IntegerField(source="image_id")
    study = serializers.CharField(source="image.study.accession")
    dataset = serializers.IntegerField(source="image.study.dataset_id")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    submitted_at = serializers.DateTimeField(allow_null=True)
    annotate_url = serializers.SerializerMethodField()

    def get_annotate_url(self, assignment) -> str:
        return reverse("annotation:annotate", args=[assignment.image_id])


class DatasetQuery(serializers.Serializer):
    dataset = id_field(required=False, help_text="only this dataset's work")


class QueueCounts(serializers.Serializer):
    assigned = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    submitted = serializers.IntegerField()


class QueueApi(APIView):
    """``GET ?status=assigned|in_progress|submitted&dataset=ID&page=N``: the caller's counts and a page
    of their assignments, oldest first."""

    class Query(DatasetQuery):
        status = serializers.ChoiceField(choices=selectors.QUEUE_STATUSES, required=False, allow_blank=True,
                                         help_text="only assignments in this state")
        page = serializers.IntegerField(min_value=1, max_value=ID_MAX, required=False)

    @extend_schema(parameters=[Query], responses=inline_serializer("QueuePage", {
        "count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True), "results": AssignmentOutput(many=True),
        "counts": QueueCounts()}))
    def get(self, request):
        query = self.Query(data=request.query_params)
        query.is_valid(raise_exception=True)
        dataset_id = query.validated_data.get("dataset")
        status_filter = query.validated_data.get("status") or None
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            selectors.assignments_for_user(user=request.user, status=status_filter, dataset_id=dataset_id),
            request, view=self,
        )
        response = paginator.get_paginated_response(AssignmentOutput(page, many=True).data)
        response.data["counts"] = selectors.queue_counts(user=request.user, dataset_id=dataset_id)
        return response


class QueueNextApi(APIView):
    """``GET``: the assignment to open next (in progress first, then the oldest to do), or
    ``{"next": null}`` when the queue is empty."""

    @extend_schema(parameters=[DatasetQuery], responses=inline_serializer(
        "QueueNext", {"next": AssignmentOutput(allow_null=True)}))
    def get(self, request):
        query = DatasetQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        following = selectors.assignment_next(user=request.user, dataset_id=query.validated_data.get("dataset"))
        return Response({"next": AssignmentOutput(following).data if following else None})


class AssignmentDetailApi(APIView):
    @extend_schema(responses=AssignmentOutput)
    def get(self, request, assignment_id: int):
        assignment = selectors.assignment_get_for_user(user=request.user, assignment_id=assignment_id)
        return Response(AssignmentOutput(assignment).data)


class AssignmentSubmitApi(APIView):
    """``POST``: validate (every region carries the lexicon's required attributes), submit, and answer
    with the submitted assignment and the next one. 400 lists the incomplete regions."""

    @extend_schema(request=None, responses=inline_serializer("AssignmentSubmitted", {
        "assignment": AssignmentOutput(), "next": AssignmentOutput(allow_null=True)}))
    def post(self, request, assignment_id: int):
        assignment = selectors.assignment_get_for_user(user=request.user, assignment_id=assignment_id)
        if assignment.annotator_id != request.user.pk:
            raise exceptions.PermissionDenied("Only the reader of this image can submit it.")
        assignment, following = services.assignment_submit_and_next(assignment=assignment)
        return Response({"assignment": AssignmentOutput(assignment).data,
                         "next": AssignmentOutput(following).data if following else None})


def _image_for_drawing(request, image_id: int):
    """The image, the caller's assignment on it and their roles, if the caller may draw on it: an
    outsider gets 404 (from the selector), a reader whose reading is closed or a member without an
    assignment 403. Region creation and outline proposals ask the same question here."""
    image = selectors.image_get_for_user(user=request.user, image_id=image_id)
    assignment = image.assignments.filter(annotator=request.user).first()
    held = selectors.dataset_roles(user=request.user, dataset_id=image.study.dataset_id)
    if not permissions.may_draw_on_image(user=request.user, image=image, held=held, assignment=assignment):
        if assignment is not None:
            raise exceptions.PermissionDenied("You have submitted this image; its reading is closed.")
        raise exceptions.PermissionDenied("This image is not assigned to you.")
    return image, assignment, held


class OutlineProposalApi(APIView):
    """``POST {"point": [x, y]}`` or ``{"box": [x0, y0, x1, y1]}``, optionally with ``"exclude": [[x, y],
    ...]``, in image pixels: a proposed lesion outline ``{"shape": "polygon", "points": [[x, y], ...],
    "score": 0..1}`` for the client to show and, if accepted, save through the regions API. It creates
    nothing. 400 for an unusable prompt, 422 when the image shows no lesion boundary there."""

    @extend_schema_serializer(component_name="OutlinePrompt")
    class Input(StrictInput):
        point = serializers.JSONField(required=False, help_text="[x, y] in image pixels")
        box = serializers.JSONField(required=False, help_text="[x0, y0, x1, y1] in image pixels")
        exclude = serializers.JSONField(required=False, default=list, help_text="[[x, y], ...] to keep outside")

    @extend_schema(request=Input, responses={
        200: inline_serializer("OutlineProposal", {
            "shape": serializers.CharField(), "points": serializers.ListField(
                child=serializers.ListField(child=serializers.FloatField())), "score": serializers.FloatField()}),
        422: OpenApiResponse(OpenApiTypes.OBJECT, description="no lesion boundary found there"),
        410: OpenApiResponse(OpenApiTypes.OBJECT, description="the image's referenced file changed or vanished")})
    def post(self, request, image_id: int):
        # Imported here so that scipy loads only in the processes that are asked for outlines.
        from .media import ReferenceProblem, image_pixels
        from .outline import OutlineNotFound, OutlinePromptError, outline_propose

        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        image, _, _ = _image_for_drawing(request, image_id)
        exclude = data.validated_data["exclude"]
        if not isinstance(exclude, list):
            raise exceptions.ValidationError({"exclude": "give a list of [x, y] points"})
        try:
            proposal = outline_propose(
                pixels=image_pixels(image=image),
                point=data.validated_data.get("point"), box=data.validated_data.get("box"), exclude=exclude,
            )
        except OutlinePromptError as error:
            raise exceptions.ValidationError({"detail": str(error)}) from error
        except OutlineNotFound as error:
            return Response({"detail": str(error)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        except ReferenceProblem as error:
            return Response({"detail": str(error)}, status=status.HTTP_410_GONE)
        return Response({"shape": "polygon", "points": [list(p) for p in proposal.points], "score": proposal.score})
