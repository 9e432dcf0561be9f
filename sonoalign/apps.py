from django.apps import AppConfig


class SonoalignConfig(AppConfig):
    name = "sonoalign"
    verbose_name = "Sonoalign"

    def ready(self) -> None:
        # Registers the deployment checks; connects the login receivers of the audit trail.
        from . import checks, receivers  # noqa: F401
