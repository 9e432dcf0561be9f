"""``manage.py assign_work --dataset NAME`` — a thin door onto ``services.assign_work``."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from annotation.services import assign_work


class Command(BaseCommand):
    help = ("Hand out a dataset's images so each gets the dataset's annotators_per_image distinct readers. "
            "Safe to re-run: images that have enough readers are left alone.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset name or id")
        parser.add_argument("--annotators", default="",
                            help="comma-separated usernames (default: the dataset's annotator members)")

    def handle(self, *args, dataset, annotators, **options):
        found = Dataset.objects.filter(pk=int(dataset)) if dataset.isdigit() else Dataset.objects.filter(name=dataset)
        target = found.first()
        if target is None:
            raise CommandError(f"no dataset '{dataset}'")
        users = None
        if annotators:
            names = [name.strip() for name in annotators.split(",") if name.strip()]
            users = list(get_user_model().objects.filter(username__in=names))
            missing = sorted(set(names) - {user.username for user in users})
            if missing:
                raise CommandError(f"unknown users: {', '.join(missing)}")
        created = assign_work(dataset=target, annotators=users)
        self.stdout.write(f"{target.name}: {created} assignments created "
                          f"({target.annotators_per_image} reader(s) per image)")
