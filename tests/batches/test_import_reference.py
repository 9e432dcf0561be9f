"""Import by reference: archives under IMPORT_ROOT are left in place, checked against their sha256 when
served, and the dataset's admins are told when a file changed or vanished."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Image
from batches.importing import BatchError, ImportOptions, batch_import
from tests.batches.test_import_support import batch_write, jpeg_bytes, zip_write
from tests.factories import dataset_make, user_make

pytestmark = pytest.mark.django_db

REFERENCE = ImportOptions(reference=True)


def _rows() -> list[dict]:
    return [{"study": "REF-1", "patient": "P-REF-1",
             "images": [{"file": "images/a.jpg", "regions": [
                 {"shape": "rectangle", "points": [[20, 30], [90, 100]], "label": "nodule"}]},
                        {"file": "images/b.jpg"}]}]


@pytest.fixture
def root(tmp_path, settings):
    settings.IMPORT_ROOT = str(tmp_path / "archive")
    (tmp_path / "archive").mkdir()
    return tmp_path / "archive"


@pytest.fixture
def batch(root):
    # Seeds no other test uses: the files must not already be in the shared test storage.
    return batch_write(root / "site-a" / "2024", _rows(),
                       {"images/a.jpg": jpeg_bytes(seed=7301), "images/b.jpg": jpeg_bytes(seed=7302)})


@pytest.fixture
def admin():
    return user_make()


@pytest.fixture
def dataset(admin):
    return dataset_make(name="referenced", members={"admin": [admin]})


def _image(name: str = "images/a.jpg") -> Image:
    return Image.objects.get(original_name=name)


def test_referenced_import_keeps_no_copy_and_records_the_path(dataset, batch):
    report = batch_import(dataset=dataset, path=batch, options=REFERENCE)
    assert report.errors == [] and report.counts["images_created"] == 2
    image = _image()
    content = (batch / "images/a.jpg").read_bytes()
    assert image.file.name == "" and image.source_path == "site-a/2024/images/a.jpg"
    assert image.sha256 == hashlib.sha256(content).hexdigest()
    assert not default_storage.exists(f"images/{image.sha256[:2]}/{image.sha256}.jpg")
    assert image.thumbnail and default_storage.exists(image.thumbnail.name)  # made from the same decode
    assert image.regions.count() == 1


def test_reimport_by_reference_changes_nothing(dataset, batch):
    batch_import(dataset=dataset, path=batch, options=REFERENCE)
    before = list(Image.objects.values_list("id", "source_path", "sha256", "file", "thumbnail"))
    report = batch_import(dataset=dataset, path=batch, options=REFERENCE)
    assert report.counts["images_created"] == 0 and report.counts["images_existing"] == 2
    assert list(Image.objects.values_list("id", "source_path", "sha256", "file", "thumbnail")) == before


def test_referenced_image_is_served_to_a_permitted_user(client, dataset, batch, admin):
    batch_import(dataset=dataset, path=batch, options=REFERENCE)
    image = _image()
    client.force_login(admin)
    response = client.get(reverse("annotation:image-file", args=[image.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == (batch / "images/a.jpg").read_bytes()
    client.force_login(user_make())  # not a member
    assert client.get(reverse("annotation:image-file", args=[image.pk])).status_code == 404


def _dataset_page(client, dataset) -> str:
    return client.get(reverse("dataset", args=[dataset.pk])).content.decode()


def test_changed_file_answers_410_and_the_admin_is_told(client, dataset, batch, admin):
    batch_import(dataset=dataset, path=batch, options=REFERENCE)
    image = _image()
    client.force_login(admin)
    assert client.get(reverse("annotation:image-file", args=[image.pk])).status_code == 200
    path = batch / "images/a.jpg"
    path.write_bytes(jpeg_bytes(seed=7303))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new modification time, surely
    response = client.get(reverse("annotation:image-file", args=[image.pk]))
    assert response.status_code == 410
    assert "has changed since it was imported" in response.content.decode()
    image.refresh_from_db()
    assert "changed" in image.reference_problem and image.reference_problem_at is not None
    page = _dataset_page(client, dataset)
    assert "1 referenced image file changed or vanished" in page and "site-a/2024/images/a.jpg" in page


def test_vanished_file_answers_410_and_is_recorded(client, dataset, batch, admin):
    batch_import(dataset=dataset, path=batch, options=REFERENCE)
    image = _image("images/b.jpg")
    (batch / "images/b.jpg").unlink()
    client.force_login(admin)
    response = client.get(reverse("annotation:image-file", args=[image.pk]))
    assert response.status_code == 410 and "vanished" in response.content.decode()
    image.refresh_from_db()
    assert image.reference_problem == "the referenced file has vanished"
    assert "site-a/2024/images/b.jpg" in _dataset_page(client, dataset)


def test_restored_file_is_served_again_and_the_record_cleared(client, dataset, batch, admin):
    batch_import(dataset=dataset, path=batch, options=REFERENCE)
    image = _image()
    content = (batch / "images/a.jpg").read_bytes()
    (batch / "images/a.jpg").unlink()
    client.force_login(admin)
    assert client.get(reverse("annotation:image-file", args=[image.pk])).status_code == 410
    (batch / "images/a.jpg").write_bytes(content)
    assert client.get(reverse("annotation:image-file", args=[image.pk])).status_code == 200
    image.refresh_from_db()
    assert image.reference_problem == "" and "changed or vanished" not in _dataset_page(client, dataset)


def test_path_outside_import_root_is_refused(dataset, root, tmp_path):
    outside = batch_write(tmp_path / "elsewhere", _rows(),
                          {"images/a.jpg": jpeg_bytes(seed=7304), "images/b.jpg": jpeg_bytes(seed=7305)})
    with pytest.raises(BatchError, match="not under IMPORT_ROOT"):
        batch_import(dataset=dataset, path=outside, options=REFERENCE)
    with pytest.raises(CommandError, match="not under IMPORT_ROOT"):
        call_command("import_batch", str(outside), "--dataset", dataset.name, "--reference")
    assert not Image.objects.exists()


def test_dotdot_escape_is_refused(dataset, root, tmp_path):
    batch_write(tmp_path / "elsewhere", _rows(), {"images/a.jpg": jpeg_bytes(seed=7306)})
    with pytest.raises(BatchError, match="not under IMPORT_ROOT"):
        batch_import(dataset=dataset, path=f"{root}/../elsewhere", options=REFERENCE)


def test_symlinked_folder_out_of_the_root_is_refused(dataset, root, tmp_path):
    outside = batch_write(tmp_path / "elsewhere", _rows(), {"images/a.jpg": jpeg_bytes(seed=7307)})
    (root / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BatchError, match="not under IMPORT_ROOT"):
        batch_import(dataset=dataset, path=root / "linked", options=REFERENCE)


def test_symlinked_file_out_of_the_root_is_refused_and_the_rest_imported(dataset, root, tmp_path):
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(jpeg_bytes(seed=7308))
    rows = [{"study": "REF-A", "patient": "P-A", "images": [{"file": "images/a.jpg"}]},
            {"study": "REF-B", "patient": "P-B", "images": [{"file": "images/b.jpg"}]}]
    folder = batch_write(root / "site-b", rows, {"images/a.jpg": jpeg_bytes(seed=7309)})
    (folder / "images/b.jpg").symlink_to(secret)
    report = batch_import(dataset=dataset, path=folder, options=REFERENCE)
    assert {problem["file"] for problem in report.errors} == {"images/b.jpg"}
    assert list(Image.objects.values_list("source_path", flat=True)) == ["site-b/images/a.jpg"]


def test_reference_without_import_root_or_from_a_zip_is_refused(dataset, settings, tmp_path):
    settings.IMPORT_ROOT = ""
    folder = batch_write(tmp_path / "batch", _rows(), {"images/a.jpg": jpeg_bytes(seed=7310)})
    with pytest.raises(BatchError, match="set IMPORT_ROOT"):
        batch_import(dataset=dataset, path=folder, options=REFERENCE)
    settings.IMPORT_ROOT = str(tmp_path)
    archive = zip_write(tmp_path / "batch.zip", {"manifest.jsonl": "{}\n"})
    with pytest.raises(BatchError, match="a .zip"):
        batch_import(dataset=dataset, path=archive, options=REFERENCE)


def test_export_with_images_copies_the_referenced_file(dataset, batch, tmp_path):
    from batches.exporting import ExportOptions, export_run

    batch_import(dataset=dataset, path=batch, options=REFERENCE)
    out = tmp_path / "export"
    export_run(dataset=dataset, out=out, options=ExportOptions(format="coco", status="all", include_images=True))
    exported = sorted(path for path in out.rglob("*.jpg"))
    assert [path.read_bytes() for path in exported] == [
        (batch / "images/a.jpg").read_bytes(), (batch / "images/b.jpg").read_bytes()]
