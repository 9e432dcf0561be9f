"""``python manage.py seed_demo --studies N --seed S``: the synthetic demo dataset (see demo.services)."""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Dataset
from demo.services import DEMO_DATASET, DEMO_PASSWORD, DEMO_USERS, seed_demo


class Command(BaseCommand):
    help = "Create the demo users and a synthetic breast/thyroid dataset with reports and ground truth."

    def add_arguments(self, parser):
        parser.add_argument("--studies", type=int, default=60)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--dataset", default=DEMO_DATASET)
        parser.add_argument("--readings", type=float, default=0.3,
                            help="share of images already read by both annotators (0–1)")
        parser.add_argument("--image-pool", type=int, default=None,
                            help="draw lesions and images from this many per body part, sharing rendered files "
                                 "(default: unique images up to 200 studies, 60 above)")
        parser.add_argument("--if-empty", action="store_true", help="do nothing if the dataset already has studies")

    def handle(self, *args, studies, seed, dataset, readings, image_pool, if_empty, **options):
        if studies < 0 or not 0 <= readings <= 1:
            raise CommandError("--studies must be ≥ 0 and --readings between 0 and 1")
        existing = Dataset.objects.filter(name=dataset).first()
        if if_empty and existing and existing.studies.exists():
            self.stdout.write(f"Dataset '{dataset}' already has {existing.studies.count()} studies; left as is.")
            return
        if image_pool is None and studies > 200:
            image_pool = 60  # rendering (~50 ms an image) would dominate; rows still differ per study
        started = time.perf_counter()
        with tqdm(total=studies, unit="study", disable=options["verbosity"] < 1, file=self.stderr) as bar:
            result = seed_demo(studies=studies, seed=seed, dataset_name=dataset, readings=readings,
                               image_pool=image_pool, progress=bar.update)
        elapsed = time.perf_counter() - started
        self.stdout.write(self.style.SUCCESS(
            f"Seeded '{result.dataset.name}': {result.studies} studies, {result.images} images "
            f"({result.files} files), {result.regions} regions, {result.assignments} new assignments "
            f"in {elapsed:.1f} s."
        ))
        self.stdout.write(f"Logins (password '{DEMO_PASSWORD}'): {', '.join(DEMO_USERS)}")
