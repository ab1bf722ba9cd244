"""Saving and restoring local state (DOCUCHAT_DATA_DIR): tables, document sources and queued messages.

moto keeps everything in memory; this writes it out through the public AWS APIs, so a restart of
`make dev` finds tenants, keys, documents and invoices where it left them.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from shared import resources
from shared.observability import logger


class LocalState:
    def __init__(self, data_dir: Path, clients: Any) -> None:
        self._dir = data_dir
        self._clients = clients

    def save(self, env: dict[str, str], include_queues: bool = False) -> None:
        staging = self._dir.with_name(self._dir.name + ".saving")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "blobs").mkdir(parents=True)
        tables = {spec.id: self._scan(env[spec.env_var]) for spec in resources.TABLES}
        (staging / "tables.json").write_text(json.dumps(tables))
        bucket = env[resources.DOCUMENTS_BUCKET.env_var]
        objects = []
        for page in self._clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                obj = self._clients.s3.get_object(Bucket=bucket, Key=entry["Key"])
                objects.append(
                    {
                        "key": entry["Key"],
                        "content_type": obj.get("ContentType", "application/octet-stream"),
                        "body": base64.b64encode(obj["Body"].read()).decode(),
                    }
                )
        (staging / "blobs" / "objects.json").write_text(json.dumps(objects))
        if include_queues:
            queued = {spec.id: self._drain(env[spec.env_var]) for spec in resources.QUEUES}
            (staging / "queues.json").write_text(json.dumps(queued))
        shutil.rmtree(self._dir, ignore_errors=True)
        staging.rename(self._dir)

    def restore(self, env: dict[str, str]) -> bool:
        """Load saved state into freshly created resources; False when there is none."""
        tables_file = self._dir / "tables.json"
        if not tables_file.exists():
            return False
        tables = json.loads(tables_file.read_text())
        for spec in resources.TABLES:
            for item in tables.get(spec.id, []):
                self._clients.dynamodb.put_item(TableName=env[spec.env_var], Item=item)
        bucket = env[resources.DOCUMENTS_BUCKET.env_var]
        objects_file = self._dir / "blobs" / "objects.json"
        for obj in json.loads(objects_file.read_text()) if objects_file.exists() else []:
            body = base64.b64decode(obj["body"])
            self._clients.s3.put_object(Bucket=bucket, Key=obj["key"], Body=body, ContentType=obj["content_type"])
        queues_file = self._dir / "queues.json"
        for queue_id, bodies in (json.loads(queues_file.read_text()) if queues_file.exists() else {}).items():
            for body in bodies:
                self._clients.sqs.send_message(QueueUrl=env[resources.queue_by_id(queue_id).env_var], MessageBody=body)
        logger.info("restored local state", extra={"data_dir": str(self._dir)})
        return True

    def _scan(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self._clients.dynamodb.get_paginator("scan").paginate(TableName=table):
            items += page.get("Items", [])
        return items

    def _drain(self, queue_url: str) -> list[str]:
        """Every message left on a queue (used at shutdown, after the pollers have stopped)."""
        bodies: list[str] = []
        while True:
            messages = self._clients.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", [])
            if not messages:
                return bodies
            bodies += [m["Body"] for m in messages]
