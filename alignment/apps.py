from django.apps import AppConfig


class AlignmentConfig(AppConfig):
    name = "alignment"
    verbose_name = "Alignment"

    def ready(self) -> None:
        # Listens to annotation's news (a report changed, a reading was submitted).
        from . import receivers  # noqa: F401
