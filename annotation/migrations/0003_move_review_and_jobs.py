"""Review rows (adjudication, consensus, metrics) move to the review app and job rows to batches:
state only, the tables and their data stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0002_review_adjudication'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables stay where they are; only Django's picture of which app owns them moves.
            state_operations=[
                migrations.RemoveField(
                    model_name='lesionconsensus',
                    name='decision',
                ),
                migrations.RemoveField(
                    model_name='datasetmetrics',
                    name='dataset',
                ),
                migrations.RemoveField(
                    model_name='exportjob',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='exportjob',
                    name='dataset',
                ),
                migrations.RemoveField(
                    model_name='importjob',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='importjob',
                    name='dataset',
                ),
                migrations.RemoveField(
                    model_name='lesionconsensus',
                    name='consensus',
                ),
                migrations.RemoveField(
                    model_name='lesionconsensus',
                    name='image',
                ),
                migrations.RemoveField(
                    model_name='lesionconsensus',
                    name='region',
                ),
                migrations.DeleteModel(
                    name='AdjudicationDecision',
                ),
                migrations.DeleteModel(
                    name='DatasetMetrics',
                ),
                migrations.DeleteModel(
                    name='ExportJob',
                ),
                migrations.DeleteModel(
                    name='ImportJob',
                ),
                migrations.DeleteModel(
                    name='LesionConsensus',
                ),
            ],
            database_operations=[],
        ),
    ]
