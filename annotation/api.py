"""JSON API of the annotation app: thin DRF views over ``services`` and ``selectors``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import reverse
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from . import permissions, selectors, services
from .models import Region, RegionRevision
from .services import RegionConflict


def api_exception_handler(exc, context):
    """Turn domain errors into HTTP: Django ``ValidationError`` → 400 with the per-field messages,
    ``RegionConflict`` → 409 with the current region."""
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

    class Output(serializers.Serializer):
        username = serializers.CharField()
        is_staff = serializers.BooleanField()
        datasets = serializers.ListField()

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

    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
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

    class CreateInput(serializers.Serializer):
        image = serializers.IntegerField()
        shape = serializers.CharField()
        geometry = serializers.JSONField()
        attributes = serializers.JSONField(required=False, default=dict)
        label = serializers.CharField(required=False, allow_blank=True, default="lesion")
        lesion_key = serializers.CharField(required=False, allow_blank=True, default="")

    def get(self, request):
        try:
            image_id = int(request.query_params.get("image", ""))
        except ValueError as error:
            raise exceptions.ValidationError({"image": "give ?image=<image id>"}) from error
        image = selectors.image_get_for_user(user=request.user, image_id=image_id)
        regions = selectors.regions_visible(user=request.user, image=image).order_by("id")
        held = selectors.dataset_roles(user=request.user, dataset_id=image.study.dataset_id)
        return Response({"results": RegionOutput(regions, many=True, context={"request": request, "held": held}).data})

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

    class UpdateInput(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        shape = serializers.CharField(required=False)
        geometry = serializers.JSONField(required=False)
        attributes = serializers.JSONField(required=False)
        label = serializers.CharField(required=False, allow_blank=True)
        lesion_key = serializers.CharField(required=False, allow_blank=True)
        seen = serializers.JSONField(required=False)

    def _editable(self, request, region_id: int) -> tuple[Region, bool]:
        """The region and whether the caller may change it even in a closed reading (an admin)."""
        region = selectors.region_get_for_user(user=request.user, region_id=region_id)
        held = selectors.dataset_roles(user=request.user, dataset_id=region.image.study.dataset_id)
        if not permissions.may_edit_region(user=request.user, region=region, held=held):
            if region.author_id != request.user.pk:
                raise exceptions.PermissionDenied("Only the region's author can change it.")
            raise exceptions.PermissionDenied("This reading was submitted; its regions are closed.")
        return region, permissions.may_administer(held)

    def get(self, request, region_id: int):
        region = selectors.region_get_for_user(user=request.user, region_id=region_id)
        return Response(RegionOutput(region, context={"request": request}).data)

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

    def delete(self, request, region_id: int):
        region, admin = self._editable(request, region_id)
        try:
            version = int(request.query_params.get("version", ""))
        except ValueError as error:
            raise exceptions.ValidationError({"version": "give ?version=<the version you last saw>"}) from error
        services.region_delete(region=region, actor=request.user, expected_version=version, allow_closed=admin)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegionRestoreApi(APIView):
    """``POST`` brings back a region its author deleted (undo), with its id and history intact."""

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

    class Output(serializers.ModelSerializer):
        actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

        class Meta:
            model = RegionRevision
            fields = ["version", "action", "actor", "changed", "shape", "geometry", "label", "lesion_key",
                      "attributes", "created_at"]

    def get(self, request, region_id: int):
        region = selectors.region_get_for_user(user=request.user, region_id=region_id, roles=permissions.REVIEW_ROLES)
        return Response({"results": self.Output(region.revisions.select_related("actor"), many=True).data})


# ---------------------------------------------------------------------------------------------- workspace
# The reader's queue and submit, over the same selectors and services as the pages.


class AssignmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    image = serializers.IntegerField(source="image_id")
    study = serializers.CharField(source="image.study.accession")
    dataset = serializers.IntegerField(source="image.study.dataset_id")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    submitted_at = serializers.DateTimeField(allow_null=True)
    annotate_url = serializers.SerializerMethodField()

    def get_annotate_url(self, assignment) -> str:
        return reverse("annotation:annotate", args=[assignment.image_id])


def _dataset_param(request) -> int | None:
    raw = request.query_params.get("dataset")
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as error:
        raise exceptions.ValidationError({"dataset": "give ?dataset=<dataset id>"}) from error


class QueueApi(APIView):
    """``GET ?status=assigned|in_progress|submitted&dataset=ID&page=N``: the caller's counts and a page
    of their assignments, oldest first."""

    def get(self, request):
        dataset_id = _dataset_param(request)
        status_filter = request.query_params.get("status") or None
        if status_filter is not None and status_filter not in selectors.QUEUE_STATUSES:
            raise exceptions.ValidationError({"status": f"use one of {', '.join(selectors.QUEUE_STATUSES)}"})
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

    def get(self, request):
        following = selectors.assignment_next(user=request.user, dataset_id=_dataset_param(request))
        return Response({"next": AssignmentOutput(following).data if following else None})


class AssignmentDetailApi(APIView):
    def get(self, request, assignment_id: int):
        assignment = selectors.assignment_get_for_user(user=request.user, assignment_id=assignment_id)
        return Response(AssignmentOutput(assignment).data)


class AssignmentSubmitApi(APIView):
    """``POST``: validate (every region carries the lexicon's required attributes), submit, and answer
    with the submitted assignment and the next one. 400 lists the incomplete regions."""

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

    class Input(serializers.Serializer):
        point = serializers.JSONField(required=False)
        box = serializers.JSONField(required=False)
        exclude = serializers.JSONField(required=False, default=list)

    def post(self, request, image_id: int):
        # Imported here so that scipy loads only in the processes that are asked for outlines.
        from .media import image_pixels
        from .outline import OutlineNotFound, OutlinePromptError, outline_propose

        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        image, _, _ = _image_for_drawing(request, image_id)
        exclude = data.validated_data["exclude"]
        if not isinstance(exclude, list):
            raise exceptions.ValidationError({"exclude": "give a list of [x, y] points"})
        try:
            proposal = outline_propose(
                pixels=image_pixels(file_name=image.file.name),
                point=data.validated_data.get("point"), box=data.validated_data.get("box"), exclude=exclude,
            )
        except OutlinePromptError as error:
            raise exceptions.ValidationError({"detail": str(error)}) from error
        except OutlineNotFound as error:
            return Response({"detail": str(error)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return Response({"shape": "polygon", "points": [list(p) for p in proposal.points], "score": proposal.score})
