"""`make dev` creates its tables from the same specs CDK deploys: prove that the two agree, key for key."""

from __future__ import annotations

from typing import Any

from local.bootstrap import table_definition
from shared import resources
from tests.infrastructure.synthesized import SynthesizedStage


def _normalised(definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": sorted(definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "GlobalSecondaryIndexes": sorted(
            (
                {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                for i in definition.get("GlobalSecondaryIndexes", [])
            ),
            key=lambda i: i["IndexName"],
        ),
        "BillingMode": definition["BillingMode"],
    }


def test_local_tables_have_the_deployed_keys_indexes_and_billing_mode(synthesized: SynthesizedStage) -> None:
    deployed = {
        r["Properties"]["TableName"]: r["Properties"] for r in synthesized.of_type("AWS::DynamoDB::Table").values()
    }
    for spec in resources.TABLES:
        name = spec.physical_name(synthesized.stage.name)
        assert name in deployed, f"{name} is not deployed"
        assert _normalised(table_definition(spec, name)) == _normalised(deployed[name]), spec.id
