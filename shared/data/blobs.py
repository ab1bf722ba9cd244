"""Document sources in S3, under tenants/<tenant id>/documents/<document id>/source."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.data.aws import error_code
from shared.errors import NotFound


def source_key(tenant_id: str, document_id: str) -> str:
    return f"tenants/{tenant_id}/documents/{document_id}/source"


def parse_source_key(key: str) -> tuple[str, str] | None:
    """(tenant id, document id) of a source key, or None for a key the service does not know."""
    parts = key.split("/")
    if len(parts) == 5 and parts[0] == "tenants" and parts[2] == "documents" and parts[4] == "source":
        return parts[1], parts[3]
    return None


class BlobStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def put(self, key: str, body: bytes, content_type: str, metadata: dict[str, str] | None = None) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata or {})

    def presigned_put(self, key: str, content_type: str, size_bytes: int, expires_seconds: int) -> str:
        """A URL the tenant PUTs the file to; S3 refuses a different type or size than was signed."""
        return str(
            self._s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type, "ContentLength": size_bytes},
                ExpiresIn=expires_seconds,
            )
        )

    def get(self, key: str, max_bytes: int) -> bytes:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                raise NotFound(f"object {key} not found") from error
            raise
        # Read one byte past the limit so an oversized object is noticed without reading all of it.
        return bytes(response["Body"].read(max_bytes + 1))

    def etag(self, key: str) -> str | None:
        """The object's ETag, or None when there is no such object."""
        try:
            return str(self._s3.head_object(Bucket=self._bucket, Key=key)["ETag"])
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)
