"""Tenants and their API keys (tenants table: pk = tenant id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import attributes, from_item, is_condition_failure, query_all, scan_all, to_item, values
from shared.errors import Conflict, NotFound
from shared.models import ApiKey, Tenant

PROFILE = "profile"
KEY_PREFIX = "key#"


class TenantRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def create(self, tenant: Tenant) -> None:
        item = {"pk": tenant.tenant_id, "sk": PROFILE, **tenant.model_dump(mode="json")}
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
        # An admin-only listing over a small table; tenants are few compared with their data.
        items = scan_all(
            self._db,
            TableName=self._table,
            FilterExpression="sk = :profile",
            ExpressionAttributeValues=values(profile=PROFILE),
        )
        return sorted((_tenant(item) for item in items), key=lambda t: t.created_at)

    def update(self, tenant: Tenant) -> None:
        item = {"pk": tenant.tenant_id, "sk": PROFILE, **tenant.model_dump(mode="json")}
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
        try:
            self._db.update_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": KEY_PREFIX + key_id}),
                UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=values(now=revoked_at.isoformat()),
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise NotFound(f"key {key_id} not found for tenant {tenant_id}") from error
            raise


def _tenant(item: dict[str, Any]) -> Tenant:
    return Tenant.model_validate(attributes(item))


def _key(item: dict[str, Any]) -> ApiKey:
    return ApiKey.model_validate(attributes(item))
