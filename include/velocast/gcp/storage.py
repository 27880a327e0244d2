"""GCS objects through the Google provider's ``GCSHook`` (emulator-aware)."""

from __future__ import annotations

from pathlib import Path

from velocast.gcp.hooks import EmulatorAwareGCSHook
from velocast.settings import VelocastSettings


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` → ``("bucket", "a/b")``."""
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise ValueError(f"not a gs:// object URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    if not bucket or not name:
        raise ValueError(f"not a gs:// object URI: {uri!r}")
    return bucket, name


class Storage:
    def __init__(self, settings: VelocastSettings) -> None:
        self.settings = settings
        self.hook = EmulatorAwareGCSHook(settings)

    def uri(self, object_name: str) -> str:
        return f"gs://{self.settings.bucket}/{object_name}"

    def upload_file(self, local_path: Path, object_name: str) -> str:
        self.hook.upload(bucket_name=self.settings.bucket, object_name=object_name, filename=str(local_path))
        return self.uri(object_name)

    def upload_bytes(self, data: bytes, object_name: str, *, content_type: str) -> str:
        """``data`` as ``object_name`` (e.g. an HTML report served with its type); its gs:// URI."""
        self.hook.upload(
            bucket_name=self.settings.bucket, object_name=object_name, data=data, mime_type=content_type
        )
        return self.uri(object_name)

    def download_file(self, uri: str, local_path: Path) -> Path:
        bucket, name = parse_gs_uri(uri)
        self.hook.download(bucket_name=bucket, object_name=name, filename=str(local_path))
        return local_path

    def exists(self, uri: str) -> bool:
        bucket, name = parse_gs_uri(uri)
        return bool(self.hook.exists(bucket_name=bucket, object_name=name))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` in the project bucket; return how many."""
        names = self.hook.list(bucket_name=self.settings.bucket, prefix=prefix)
        for name in names:
            self.hook.delete(bucket_name=self.settings.bucket, object_name=name)
        return len(names)
