"""``python manage.py metrics_refresh --dataset NAME``: compute the dataset's agreement snapshot now
(the dashboard otherwise refreshes it from its button or the periodic task)."""

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from review.adjudication import dataset_metrics_refresh


class Command(BaseCommand):
    help = "Compute the agreement metrics shown on a dataset's dashboard."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)

    def handle(self, *args, dataset, **options):
        target = Dataset.objects.filter(name=dataset).first()
        if target is None:
            raise CommandError(f"no dataset named '{dataset}'")
        snapshot = dataset_metrics_refresh(dataset_id=target.pk)
        self.stdout.write(f"Agreement metrics of '{target.name}' computed in {snapshot.duration_s:.1f} s.")
