from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "review"
    verbose_name = "Review"

    def ready(self) -> None:
        # Listens to alignment's news (an image's disagreements changed).
        from . import receivers  # noqa: F401
