"""Review models, moved from annotation by state only: their tables keep their names and rows."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_types_move(apps, schema_editor):
    """Permissions given on these models keep working: their content types follow them."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="annotation", model__in=['adjudicationdecision', 'lesionconsensus', 'datasetmetrics']).update(app_label="review")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('alignment', '0001_initial'),
        ('annotation', '0003_move_review_and_jobs'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables stay where they are; only Django's picture of which app owns them moves.
            state_operations=[
                migrations.CreateModel(
                    name='AdjudicationDecision',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('action', models.CharField(choices=[('accept_report', "accept the report's value"), ('accept_annotation', "accept an annotation's value"), ('other_value', 'set another value'), ('edit_geometry', 'edit the consensus outline'), ('report_wrong', 'report wrong'), ('annotation_wrong', 'annotation wrong'), ('not_a_lesion', 'not a lesion'), ('dismiss', 'dismiss'), ('comment', 'comment'), ('settled', 'settled by another decision'), ('confirm', "confirm the readers' agreement")], max_length=24)),
                        ('side', models.CharField(blank=True, help_text='The side picked: report, annotation or a reader', max_length=64)),
                        ('attribute', models.CharField(blank=True, max_length=64)),
                        ('value', models.JSONField(blank=True, help_text='The value decided', null=True)),
                        ('before', models.JSONField(blank=True, default=dict, help_text='Disagreement and consensus before the action')),
                        ('comment', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('consensus_region', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='annotation.region')),
                        ('dataset', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.dataset')),
                        ('disagreement', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='decisions', to='alignment.disagreement')),
                        ('image', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='decisions', to='annotation.image')),
                        ('settled_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='settled', to='review.adjudicationdecision')),
                    ],
                    options={
                        'db_table': 'annotation_adjudicationdecision',
                        'ordering': ['created_at', 'id'],
                    },
                ),
                migrations.CreateModel(
                    name='DatasetMetrics',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('computed_at', models.DateTimeField(auto_now_add=True)),
                        ('duration_s', models.FloatField(default=0)),
                        ('data', models.JSONField(default=dict)),
                        ('dataset', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='metrics_snapshots', to='annotation.dataset')),
                    ],
                    options={
                        'verbose_name_plural': 'dataset metrics',
                        'db_table': 'annotation_datasetmetrics',
                    },
                ),
                migrations.CreateModel(
                    name='LesionConsensus',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('not_a_lesion', models.BooleanField(default=False)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('consensus', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='consensus_members', to='annotation.region')),
                        ('decision', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='review.adjudicationdecision')),
                        ('image', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.image')),
                        ('region', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='consensus_link', to='annotation.region')),
                    ],
                    options={
                        'db_table': 'annotation_lesionconsensus',
                    },
                ),
                migrations.AddIndex(
                    model_name='adjudicationdecision',
                    index=models.Index(fields=['dataset', 'created_at'], name='decision_dataset_time'),
                ),
                migrations.AddIndex(
                    model_name='adjudicationdecision',
                    index=models.Index(fields=['image', 'created_at'], name='decision_image_time'),
                ),
                migrations.AddConstraint(
                    model_name='adjudicationdecision',
                    constraint=models.CheckConstraint(condition=models.Q(('action__in', ['accept_report', 'accept_annotation', 'other_value', 'edit_geometry', 'report_wrong', 'annotation_wrong', 'not_a_lesion', 'dismiss', 'comment', 'settled', 'confirm'])), name='decision_action_valid'),
                ),
                migrations.AddIndex(
                    model_name='datasetmetrics',
                    index=models.Index(fields=['dataset', '-computed_at'], name='datasetmetrics_latest'),
                ),
                migrations.AddIndex(
                    model_name='lesionconsensus',
                    index=models.Index(fields=['image'], name='lesionconsensus_image'),
                ),
                migrations.AddConstraint(
                    model_name='lesionconsensus',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('consensus__isnull', True), ('not_a_lesion', True)), models.Q(('consensus__isnull', False), ('not_a_lesion', False)), _connector='OR'), name='lesionconsensus_region_or_no_lesion'),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_move, migrations.RunPython.noop),
    ]
