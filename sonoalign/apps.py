from django.apps import AppConfig


class SonoalignConfig(AppConfig):
    name = "sonoalign"
    verbose_name = "Sonoalign"

    def ready(self) -> None:
        from . import checks  # noqa: F401 — registers the deployment checks
