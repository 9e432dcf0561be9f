"""Dataset administration pages: open a dataset, its members, its work. Dataset admins and staff only
(``dataset_get_for_user(..., roles=["admin"])``: outsider 404, other roles 403). Each POST calls one
service, which checks, changes and audits; htmx posts get the section back, plain posts the page."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from . import selectors, services
from .lexicons import lexicon_load, lexicon_systems
from .models import Membership

ROLE_LABELS = {"annotator": gettext_lazy("Annotator"), "reviewer": gettext_lazy("Reviewer"),
               "admin": gettext_lazy("Admin")}


def _role_choices():
    return [(role, ROLE_LABELS[role]) for role in Membership.Role.values]


def _errors(error: ValidationError) -> list[str]:
    return [message for messages_ in error.message_dict.values() for message in messages_] \
        if hasattr(error, "error_dict") else list(error.messages)


class DatasetForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    lexicon = forms.ChoiceField(label=gettext_lazy("Lexicon"))
    annotators_per_image = forms.TypedChoiceField(
        label=gettext_lazy("Readers per image"), coerce=int, initial=2,
        choices=[(1, "1"), (2, "2"), (3, "3")],
        help_text=gettext_lazy("How many annotators read each image independently."))
    blind_reading = forms.BooleanField(
        label=gettext_lazy("Blind reading"), required=False, initial=True,
        help_text=gettext_lazy("Readers see each other's regions only after every reader of the image has submitted."))
    description = forms.CharField(label=gettext_lazy("Description"), required=False,
                                  widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lexicon"].choices = [
            (system, f"{lexicon_load(system)['name']} · {lexicon_load(system)['version']}")
            for system in lexicon_systems()]


class MemberForm(forms.Form):
    identifier = forms.CharField(label=gettext_lazy("Username or email"), max_length=254)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=_role_choices, initial="annotator")


class HandOutForm(forms.Form):
    annotators = forms.ModelMultipleChoiceField(label=gettext_lazy("Annotators"), queryset=None,
                                                widget=forms.CheckboxSelectMultiple)
    annotators_per_image = forms.TypedChoiceField(label=gettext_lazy("Readers per image"), coerce=int,
                                                  choices=[(1, "1"), (2, "2"), (3, "3")])

    def __init__(self, *args, dataset, **kwargs):
        super().__init__(*args, **kwargs)
        annotators = selectors.dataset_annotators(dataset=dataset)
        self.fields["annotators"].queryset = get_user_model().objects.filter(pk__in=[u.pk for u in annotators])
        self.fields["annotators"].label_from_instance = lambda user: user.username
        self.fields["annotators"].initial = [user.pk for user in annotators]
        self.fields["annotators_per_image"].initial = dataset.annotators_per_image


class ReassignForm(forms.Form):
    source = forms.ModelChoiceField(label=gettext_lazy("From"), queryset=None)
    target = forms.ModelChoiceField(label=gettext_lazy("To"), queryset=None)

    def __init__(self, *args, dataset, **kwargs):
        super().__init__(*args, **kwargs)
        queryset = get_user_model().objects.filter(
            pk__in=[u.pk for u in selectors.dataset_annotators(dataset=dataset)]).order_by("username")
        for name in ("source", "target"):
            self.fields[name].queryset = queryset
            self.fields[name].label_from_instance = lambda user: user.username


def _admin_dataset(request, dataset_id: int):
    return selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=["admin"])


@login_required
@require_http_methods(["GET", "POST"])
def dataset_new(request):
    if not selectors.user_may_create_datasets(user=request.user):
        raise PermissionDenied(_("Only staff and dataset admins may create datasets."))
    form = DatasetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            data = form.cleaned_data
            dataset = services.dataset_open(
                actor=request.user, name=data["name"], lexicon_system=data["lexicon"],
                annotators_per_image=data["annotators_per_image"], blind_reading=data["blind_reading"],
                description=data["description"])
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            messages.success(request, _("Dataset “%(name)s” created. Now invite its members.") % {"name": dataset.name})
            return redirect("annotation:manage-members", dataset.pk)
    return render(request, "annotation/manage_new.html", {"form": form})


def _members_context(request, dataset, **extra) -> dict:
    return {"dataset": dataset, "members": selectors.dataset_members(dataset=dataset),
            "roles": Membership.Role.values, "role_labels": ROLE_LABELS,
            "form": extra.pop("form", None) or MemberForm(),
            "events": selectors.audit_events_for_dataset(dataset=dataset), **extra}


def _members_response(request, dataset, **extra):
    template = "annotation/_manage_members.html" if request.htmx else "annotation/manage_members.html"
    return render(request, template, _members_context(request, dataset, **extra))


@login_required
@require_http_methods(["GET", "POST"])
def manage_members(request, dataset_id: int):
    dataset = _admin_dataset(request, dataset_id)
    if request.method == "GET":
        return _members_response(request, dataset)
    form = MemberForm(request.POST)
    if not form.is_valid():
        return _members_response(request, dataset, form=form)
    try:
        user, created = services.member_add_or_invite(actor=request.user, dataset=dataset,
                                                      identifier=form.cleaned_data["identifier"],
                                                      role=form.cleaned_data["role"])
    except ValidationError as error:
        form.add_error(None, _errors(error))
        return _members_response(request, dataset, form=form)
    invite = None
    if created:
        uidb64, token = services.invite_link_parts(user=user)
        invite = {"user": user, "url": request.build_absolute_uri(
            reverse("annotation:set-password", args=[uidb64, token]))}
    notice = _("%(user)s is now %(role)s of this dataset.") % {
        "user": user.username, "role": ROLE_LABELS[form.cleaned_data["role"]]}
    return _members_response(request, dataset, invite=invite, notice=notice)


@login_required
@require_http_methods(["POST"])
def manage_member_roles(request, dataset_id: int, user_id: int):
    dataset = _admin_dataset(request, dataset_id)
    member = selectors.dataset_member_get(dataset=dataset, user_id=user_id)
    roles = [] if "remove" in request.POST else request.POST.getlist("roles")
    try:
        held = services.member_roles_set(actor=request.user, dataset=dataset, user=member, roles=roles)
    except ValidationError as error:
        return _members_response(request, dataset, problem=" ".join(_errors(error)))
    notice = (_("%(user)s left the dataset.") if not held else _("Roles of %(user)s saved.")) % {"user": member.username}
    return _members_response(request, dataset, notice=notice)


def _work_context(request, dataset, **extra) -> dict:
    return {"dataset": dataset, "progress": selectors.annotator_progress(dataset=dataset),
            "hand_out": extra.pop("hand_out", None) or HandOutForm(dataset=dataset),
            "reassign": extra.pop("reassign", None) or ReassignForm(dataset=dataset),
            "events": selectors.audit_events_for_dataset(dataset=dataset), **extra}


def _work_response(request, dataset, **extra):
    template = "annotation/_manage_work.html" if request.htmx else "annotation/manage_work.html"
    return render(request, template, _work_context(request, dataset, **extra))


@login_required
@require_http_methods(["GET", "POST"])
def manage_work(request, dataset_id: int):
    dataset = _admin_dataset(request, dataset_id)
    if request.method == "GET":
        return _work_response(request, dataset)
    if request.POST.get("action") == "reassign":
        form = ReassignForm(request.POST, dataset=dataset)
        if not form.is_valid():
            return _work_response(request, dataset, reassign=form)
        try:
            moved, kept = services.work_reassign(actor=request.user, dataset=dataset, source=form.cleaned_data["source"],
                                                 target=form.cleaned_data["target"])
        except ValidationError as error:
            form.add_error(None, _errors(error))
            return _work_response(request, dataset, reassign=form)
        notice = _("%(moved)s unstarted images moved from %(source)s to %(target)s; %(kept)s stay (already read by %(target)s).") % {
            "moved": moved, "kept": kept, "source": form.cleaned_data["source"].username,
            "target": form.cleaned_data["target"].username} if kept else _(
            "%(moved)s unstarted images moved from %(source)s to %(target)s.") % {
            "moved": moved, "source": form.cleaned_data["source"].username, "target": form.cleaned_data["target"].username}
        return _work_response(request, dataset, notice=notice)
    form = HandOutForm(request.POST, dataset=dataset)
    if not form.is_valid():
        return _work_response(request, dataset, hand_out=form)
    try:
        created = services.work_hand_out(actor=request.user, dataset=dataset,
                                         annotators=list(form.cleaned_data["annotators"]),
                                         annotators_per_image=form.cleaned_data["annotators_per_image"])
    except ValidationError as error:
        form.add_error(None, _errors(error))
        return _work_response(request, dataset, hand_out=form)
    dataset.refresh_from_db()
    return _work_response(request, dataset, notice=_("%(count)s readings handed out.") % {"count": created})


AUDIT_FILTERS = [("", gettext_lazy("Everything")), ("auth.", gettext_lazy("Logins")),
                 ("export.", gettext_lazy("Exports")), ("adjudication.", gettext_lazy("Adjudications")),
                 ("membership.", gettext_lazy("Members")), ("work.", gettext_lazy("Work"))]


@login_required
@require_http_methods(["GET"])
def audit_trail(request):
    """Staff: logins, failed logins, exports, adjudications and dataset changes, newest first."""
    action = request.GET.get("action", "")
    if action not in dict(AUDIT_FILTERS):
        action = ""
    events = selectors.audit_trail_for_user(user=request.user, action=action)
    return render(request, "annotation/audit_trail.html", {"events": events, "action": action,
                                                           "filters": AUDIT_FILTERS})
