"""What `make dev` keeps in DOCUCHAT_DATA_DIR besides the tables: document files and vectors, and queued messages.

The tables need nothing from here: DynamoDB Local keeps them in its own database file (`<data dir>/dynamodb/`).
moto keeps S3 and SQS in memory, so their contents are written out through the public AWS APIs:

    <data dir>/s3/index.json        key -> {etag, content_type, file}
    <data dir>/s3/objects/<hash>    each object's bytes
    <data dir>/queues.json          messages still queued at shutdown, by queue id

Saving is incremental (an object is written again only when its ETag changed), so the periodic save of a
large tenant's vector segments costs a listing, not a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from shared import resources
from shared.observability import logger


class LocalState:
    def __init__(self, data_dir: Path, clients: Any) -> None:
        self._dir = data_dir
        self._objects = data_dir / "s3" / "objects"
        self._index_file = data_dir / "s3" / "index.json"
        self._queues_file = data_dir / "queues.json"
        self._clients = clients

    @staticmethod
    def dynamodb_dir_of(data_dir: Path) -> Path:
        """Where DynamoDB Local keeps its database file."""
        return data_dir / "dynamodb"

    # -- saving --------------------------------------------------------------------------------------------------

    def save(self, env: dict[str, str], include_queues: bool = False) -> None:
        self._save_objects(env[resources.DOCUMENTS_BUCKET.env_var])
        if include_queues:  # at shutdown, once the pollers have stopped
            queued = {spec.id: self._drain(env[spec.env_var]) for spec in resources.QUEUES}
            _write_atomically(self._queues_file, json.dumps(queued))

    def _save_objects(self, bucket: str) -> None:
        self._objects.mkdir(parents=True, exist_ok=True)
        saved = self._read_index()
        current: dict[str, dict[str, str]] = {}
        for page in self._clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                key, etag = entry["Key"], entry["ETag"]
                if saved.get(key, {}).get("etag") == etag and (self._objects / saved[key]["file"]).exists():
                    current[key] = saved[key]
                    continue
                obj = self._clients.s3.get_object(Bucket=bucket, Key=key)
                file = hashlib.sha256(key.encode()).hexdigest()
                _write_atomically(self._objects / file, obj["Body"].read())
                current[key] = {"etag": etag, "content_type": obj.get("ContentType", "application/octet-stream")}
                current[key]["file"] = file
        for key in saved.keys() - current.keys():  # deleted since the last save
            (self._objects / saved[key]["file"]).unlink(missing_ok=True)
        _write_atomically(self._index_file, json.dumps(current))

    def _drain(self, queue_url: str) -> list[str]:
        """Every message left on a queue."""
        bodies: list[str] = []
        while True:
            messages = self._clients.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", [])
            if not messages:
                return bodies
            bodies += [m["Body"] for m in messages]

    # -- restoring -----------------------------------------------------------------------------------------------

    def restore(self, env: dict[str, str]) -> bool:
        """Put saved objects and queued messages back into fresh moto resources; False when nothing was saved."""
        index = self._read_index()
        bucket = env[resources.DOCUMENTS_BUCKET.env_var]
        for key, entry in index.items():
            body = (self._objects / entry["file"]).read_bytes()
            self._clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=entry["content_type"])
        queued = json.loads(self._queues_file.read_text()) if self._queues_file.exists() else {}
        for queue_id, bodies in queued.items():
            for body in bodies:
                self._clients.sqs.send_message(QueueUrl=env[resources.queue_by_id(queue_id).env_var], MessageBody=body)
        # The file stays until the next clean stop rewrites it: after a crash the messages come again, which
        # their consumers are built for (metering counts an event once), rather than never.
        if index or queued:
            logger.info("restored local state", extra={"data_dir": str(self._dir), "objects": len(index)})
        return bool(index or queued)

    def _read_index(self) -> dict[str, dict[str, str]]:
        return json.loads(self._index_file.read_text()) if self._index_file.exists() else {}


def _write_atomically(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    if isinstance(content, str):
        temporary.write_text(content)
    else:
        temporary.write_bytes(content)
    os.replace(temporary, path)
