"""Documents and their chunks (documents table: pk = tenant id)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import (
    Page,
    attributes,
    batch_write,
    from_item,
    is_condition_failure,
    query_all,
    query_page,
    to_item,
    values,
)
from shared.errors import NotFound
from shared.models import Chunk, Document, DocumentStatus, IngestionStage
from shared.resources import PENDING_UPLOADS

DOC_PREFIX = "doc#"
CHUNK_PREFIX = "chunk#"
# The partition of the pending-uploads index: present only on documents still waiting for their file.
UPLOAD_PENDING = "pending"


def _chunk_sk(document_id: str, index: int) -> str:
    return f"{CHUNK_PREFIX}{document_id}#{index:05d}"


class DocumentRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def put(self, document: Document) -> None:
        item = {"pk": document.tenant_id, "sk": DOC_PREFIX + document.document_id, **document.model_dump(mode="json")}
        if document.status == DocumentStatus.PENDING and document.upload_expires_at is not None:
            item["upload_pending"] = UPLOAD_PENDING  # in the pending-uploads index until the file arrives
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def uploads_expired_before(self, cutoff: datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant id, document id) of documents still waiting for a file whose upload URL expired before
        `cutoff`, oldest first (from the sparse pending-uploads index, eventually consistent)."""
        response = self._db.query(
            TableName=self._table,
            IndexName=PENDING_UPLOADS.name,
            KeyConditionExpression="upload_pending = :pending AND upload_expires_at < :cutoff",
            ExpressionAttributeValues=values(pending=UPLOAD_PENDING, cutoff=cutoff.isoformat()),
            ProjectionExpression="pk, sk",
            Limit=limit,
        )
        return [(item["pk"]["S"], item["sk"]["S"][len(DOC_PREFIX) :]) for item in response.get("Items", [])]

    def get(self, tenant_id: str, document_id: str) -> Document | None:
        key = to_item({"pk": tenant_id, "sk": DOC_PREFIX + document_id})
        item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return _document(from_item(item)) if item else None

    def page_documents(self, tenant_id: str, limit: int, cursor: str | None = None) -> Page[Document]:
        """Newest first: document ids are time-ordered, so key order is creation order."""
        items, next_cursor = query_page(
            self._db,
            listing="documents",
            fixed={"pk": tenant_id},
            cursor_keys=("sk",),
            limit=limit,
            cursor=cursor,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=DOC_PREFIX),
            ScanIndexForward=False,
        )
        return Page([_document(item) for item in items], next_cursor)

    def claim(
        self, tenant_id: str, document_id: str, generation: str, previous: str | None, updated_at: datetime
    ) -> None:
        """Start processing upload `generation`, if the document still has the generation it was read with.

        Raises NotFound when the document is gone or being deleted, or another delivery claimed it first.
        """
        condition = "attribute_exists(pk) AND #status <> :deleting AND "
        condition += "generation = :previous" if previous else "attribute_not_exists(generation)"
        params: dict[str, Any] = {
            "status": DocumentStatus.PROCESSING.value,
            "generation": generation,
            "stage": IngestionStage.PARSING.value,
            "zero": 0,
            "updated_at": updated_at.isoformat(),
            "empty": "",
            "deleting": DocumentStatus.DELETING.value,
        }
        if previous:
            params["previous"] = previous
        self._update(
            tenant_id,
            document_id,
            "SET #status = :status, generation = :generation, stage = :stage, chunks_embedded = :zero, "
            "chunk_count = :zero, reason = :empty, updated_at = :updated_at REMOVE upload_pending",
            condition,
            params,
        )

    def record_progress(
        self,
        tenant_id: str,
        document_id: str,
        generation: str,
        updated_at: datetime,
        *,
        stage: IngestionStage,
        chunk_count: int | None = None,
        chunks_embedded: int | None = None,
    ) -> None:
        """Progress of the upload being processed; NotFound once the document moved on (deleted, re-uploaded)."""
        assignments = ["stage = :stage", "updated_at = :updated_at"]
        params: dict[str, Any] = {"stage": stage.value, "updated_at": updated_at.isoformat()}
        if chunk_count is not None:
            assignments.append("chunk_count = :chunk_count")
            params["chunk_count"] = chunk_count
        if chunks_embedded is not None:
            assignments.append("chunks_embedded = :embedded")
            params["embedded"] = chunks_embedded
        self._update(tenant_id, document_id, "SET " + ", ".join(assignments), *self._processing(generation, params))

    def mark_failed(
        self, tenant_id: str, document_id: str, generation: str | None, reason: str, updated_at: datetime
    ) -> None:
        """Failed with a reason, if it is still processing upload `generation` (or, with None, was never
        claimed): an older upload failing late never fails a newer one, nor a document being deleted."""
        params: dict[str, Any] = {"failed": DocumentStatus.FAILED.value, "reason": reason}
        params["updated_at"] = updated_at.isoformat()
        expression = "SET #status = :failed, reason = :reason, updated_at = :updated_at REMOVE stage, upload_pending"
        if generation is None:
            condition = "#status = :pending AND attribute_not_exists(generation)"
            self._update(tenant_id, document_id, expression, condition, {**params, "pending": "pending"})
        else:
            self._update(tenant_id, document_id, expression, *self._processing(generation, params))

    def mark_deleting(self, tenant_id: str, document_id: str, updated_at: datetime) -> None:
        params = {"deleting": DocumentStatus.DELETING.value, "updated_at": updated_at.isoformat()}
        self._update(
            tenant_id, document_id, "SET #status = :deleting, updated_at = :updated_at", "attribute_exists(pk)", params
        )

    @staticmethod
    def _processing(generation: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        condition = "#status = :processing AND generation = :generation"
        return condition, {**params, "processing": DocumentStatus.PROCESSING.value, "generation": generation}

    def _update(
        self, tenant_id: str, document_id: str, expression: str, condition: str, params: dict[str, Any]
    ) -> None:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": DOC_PREFIX + document_id}),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values(**params),
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise NotFound(f"document {document_id} is not in the expected state") from error
            raise

    def read_chunks(self, tenant_id: str, document_id: str) -> list[Chunk]:
        """A document's chunks, in order."""
        items = self._query_chunks(tenant_id, f"{CHUNK_PREFIX}{document_id}#", ConsistentRead=True)
        return [Chunk.model_validate(attributes(item)) for item in items]

    def get_chunks(self, tenant_id: str, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], Chunk]:
        """Chunks by (document id, index), all of one tenant; chunks that no longer exist are left out."""
        keys = [to_item({"pk": tenant_id, "sk": _chunk_sk(doc, index)}) for doc, index in dict.fromkeys(wanted)]
        found: dict[tuple[str, int], Chunk] = {}
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self._table: {"Keys": keys[start : start + 100]}}
            for attempt in range(8):
                response = self._db.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self._table, []):
                    chunk = Chunk.model_validate(attributes(from_item(item)))
                    found[(chunk.document_id, chunk.index)] = chunk
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # unprocessed keys mean throttling: back off
        return found

    def replace_chunks(self, tenant_id: str, document_id: str, chunks: list[Chunk]) -> None:
        """Write a document's chunks; chunk keys are stable, so re-ingesting overwrites, never duplicates."""
        stale = {item["sk"] for item in self._chunk_items(tenant_id, document_id)}
        puts = []
        for chunk in chunks:
            sk = _chunk_sk(document_id, chunk.index)
            stale.discard(sk)
            puts.append({"PutRequest": {"Item": to_item({"pk": tenant_id, "sk": sk, **chunk.model_dump(mode="json")})}})
        deletes = [{"DeleteRequest": {"Key": to_item({"pk": tenant_id, "sk": sk})}} for sk in sorted(stale)]
        batch_write(self._db, self._table, puts + deletes)

    def delete(self, tenant_id: str, document_id: str) -> None:
        """Remove a document and all its chunks."""
        self.replace_chunks(tenant_id, document_id, [])
        self._db.delete_item(TableName=self._table, Key=to_item({"pk": tenant_id, "sk": DOC_PREFIX + document_id}))

    def list_chunks(self, tenant_id: str) -> list[Chunk]:
        return [Chunk.model_validate(attributes(item)) for item in self._query_chunks(tenant_id, CHUNK_PREFIX)]

    def _chunk_items(self, tenant_id: str, document_id: str) -> list[dict[str, Any]]:
        return list(self._query_chunks(tenant_id, f"{CHUNK_PREFIX}{document_id}#", ProjectionExpression="sk"))

    def _query_chunks(self, tenant_id: str, prefix: str, **params: Any) -> Iterator[dict[str, Any]]:
        """The tenant's chunk items whose key starts with `prefix` (all, or one document's)."""
        return query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=prefix),
            **params,
        )


def _document(item: dict[str, Any]) -> Document:
    values_ = attributes(item)
    values_.pop("upload_pending", None)
    values_["reason"] = values_.get("reason") or None
    return Document.model_validate(values_)
