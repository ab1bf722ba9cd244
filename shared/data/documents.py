"""Documents and their chunks (documents table: pk = tenant id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import attributes, batch_write, from_item, is_condition_failure, query_all, to_item, values
from shared.errors import NotFound
from shared.models import Chunk, Document, DocumentStatus

DOC_PREFIX = "doc#"
CHUNK_PREFIX = "chunk#"


def _chunk_sk(document_id: str, index: int) -> str:
    return f"{CHUNK_PREFIX}{document_id}#{index:05d}"


class DocumentRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def put(self, document: Document) -> None:
        item = {"pk": document.tenant_id, "sk": DOC_PREFIX + document.document_id, **document.model_dump(mode="json")}
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def get(self, tenant_id: str, document_id: str) -> Document | None:
        key = to_item({"pk": tenant_id, "sk": DOC_PREFIX + document_id})
        item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return _document(from_item(item)) if item else None

    def list_documents(self, tenant_id: str) -> list[Document]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=DOC_PREFIX),
        )
        return sorted((_document(item) for item in items), key=lambda d: d.created_at, reverse=True)

    def set_status(
        self,
        tenant_id: str,
        document_id: str,
        status: DocumentStatus,
        updated_at: datetime,
        *,
        reason: str | None = None,
        chunk_count: int | None = None,
    ) -> None:
        assignments = ["#status = :status", "updated_at = :updated_at", "reason = :reason"]
        params = {"status": status.value, "updated_at": updated_at.isoformat(), "reason": reason or ""}
        if chunk_count is not None:
            assignments.append("chunk_count = :chunk_count")
            params["chunk_count"] = chunk_count  # type: ignore[assignment]
        try:
            self._db.update_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": DOC_PREFIX + document_id}),
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values(**params),
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise NotFound(f"document {document_id} not found") from error
            raise

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
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=CHUNK_PREFIX),
        )
        return [Chunk.model_validate(attributes(item)) for item in items]

    def _chunk_items(self, tenant_id: str, document_id: str) -> list[dict[str, Any]]:
        return list(
            query_all(
                self._db,
                TableName=self._table,
                KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
                ExpressionAttributeValues=values(tenant=tenant_id, prefix=f"{CHUNK_PREFIX}{document_id}#"),
                ProjectionExpression="sk",
            )
        )


def _document(item: dict[str, Any]) -> Document:
    values_ = attributes(item)
    values_["reason"] = values_.get("reason") or None
    return Document.model_validate(values_)
