"""Tenants and their API keys (tenants table: pk = tenant id)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import Page, attributes, from_item, is_condition_failure, query_all, query_page, to_item, values
from shared.errors import Conflict, NotFound
from shared.models import ApiKey, Tenant
from shared.resources import TENANT_DIRECTORY

PROFILE = "profile"
KEY_PREFIX = "key#"
# The partition of the tenant-directory index: every tenant's profile, and nothing else, carries it.
DIRECTORY = "tenants"


class TenantRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def create(self, tenant: Tenant) -> None:
        item = _profile(tenant)
        try:
            self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_condition_failure(error):
                raise Conflict(f"tenant {tenant.tenant_id} already exists") from error
            raise

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._db.get_item(TableName=self._table, Key=to_item({"pk": tenant_id, "sk": PROFILE})).get("Item")
        return _tenant(from_item(item)) if item else None

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, oldest first (billing and the outbox drain walk them all)."""
        items = query_all(self._db, **self._directory_query())
        return [_tenant(item) for item in items]

    def page_tenants(self, limit: int, cursor: str | None = None) -> Page[Tenant]:
        """Oldest first, a page at a time, from the tenant-directory index."""
        items, next_cursor = query_page(
            self._db,
            listing="tenants",
            fixed={"directory": DIRECTORY},
            cursor_keys=("pk", "sk", "tenant_id"),
            limit=limit,
            cursor=cursor,
            **self._directory_query(),
        )
        return Page([_tenant(item) for item in items], next_cursor)

    def _directory_query(self) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "IndexName": TENANT_DIRECTORY.name,
            "KeyConditionExpression": "directory = :directory",
            "ExpressionAttributeValues": values(directory=DIRECTORY),
        }

    def update(self, tenant: Tenant) -> None:
        item = _profile(tenant)
        try:
            self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_exists(pk)")
        except ClientError as error:
            if is_condition_failure(error):
                raise NotFound(f"tenant {tenant.tenant_id} not found") from error
            raise

    def put_key(self, key: ApiKey) -> None:
        item = {"pk": key.tenant_id, "sk": KEY_PREFIX + key.key_id, **key.model_dump(mode="json")}
        self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")

    def get_key(self, tenant_id: str, key_id: str) -> ApiKey | None:
        key = to_item({"pk": tenant_id, "sk": KEY_PREFIX + key_id})
        item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return _key(from_item(item)) if item else None

    def list_keys(self, tenant_id: str) -> list[ApiKey]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=KEY_PREFIX),
        )
        return [_key(item) for item in items]

    def revoke_key(self, tenant_id: str, key_id: str, revoked_at: datetime) -> None:
        """Refuse the key from `revoked_at` on (now, or later for a grace period). A revocation already set
        earlier stays: revoking again can bring the moment forward, never push it back."""
        key = to_item({"pk": tenant_id, "sk": KEY_PREFIX + key_id})
        try:
            self._db.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET revoked_at = :at",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(revoked_at) OR revoked_at > :at)",
                ExpressionAttributeValues=values(at=revoked_at.isoformat()),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            if "Item" not in self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True):
                raise NotFound(f"key {key_id} not found for tenant {tenant_id}") from error

    def touch_key(self, tenant_id: str, key_id: str, now: datetime, not_since: datetime) -> None:
        """Set last_used_at, unless it was set after `not_since` (so a busy key costs a write every few minutes)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": KEY_PREFIX + key_id}),
                UpdateExpression="SET last_used_at = :now",
                ConditionExpression="attribute_exists(pk) AND "
                "(attribute_not_exists(last_used_at) OR last_used_at < :since)",
                ExpressionAttributeValues=values(now=now.isoformat(), since=not_since.isoformat()),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise

    # --- the issuers of tenants' tokens: each belongs to one tenant ---------------------------------------------

    def claim_issuer(self, issuer: str, tenant_id: str) -> None:
        """Record that `issuer`'s tokens are `tenant_id`'s; Conflict when another tenant has it."""
        item = {**_issuer_key(issuer), "issuer": issuer, "tenant_id": tenant_id}
        try:
            self._db.put_item(
                TableName=self._table,
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(pk) OR tenant_id = :tenant",
                ExpressionAttributeValues=values(tenant=tenant_id),
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise Conflict("this issuer already belongs to another tenant") from error
            raise

    def release_issuer(self, issuer: str, tenant_id: str) -> None:
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=to_item(_issuer_key(issuer)),
                ConditionExpression="tenant_id = :tenant",
                ExpressionAttributeValues=values(tenant=tenant_id),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise

    def tenant_for_issuer(self, issuer: str) -> Tenant | None:
        item = self._db.get_item(TableName=self._table, Key=to_item(_issuer_key(issuer))).get("Item")
        return self.get(str(from_item(item)["tenant_id"])) if item else None


def _issuer_key(issuer: str) -> dict[str, str]:
    # Not a tenant's item: the index from an issuer to the one tenant that trusts it.
    return {"pk": "issuer#" + hashlib.sha256(issuer.encode()).hexdigest(), "sk": "issuer"}


def _profile(tenant: Tenant) -> dict[str, Any]:
    return {"pk": tenant.tenant_id, "sk": PROFILE, "directory": DIRECTORY, **tenant.model_dump(mode="json")}


def _tenant(item: dict[str, Any]) -> Tenant:
    values_ = attributes(item)
    values_.pop("directory", None)
    return Tenant.model_validate(values_)


def _key(item: dict[str, Any]) -> ApiKey:
    return ApiKey.model_validate(attributes(item))
