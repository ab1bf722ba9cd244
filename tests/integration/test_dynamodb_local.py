"""DynamoDB Local starts, behaves like DynamoDB where moto is weakest (transactions), and stops cleanly."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError, port_is_open

pytestmark = pytest.mark.dynamodb_local
TABLE = "accounts"


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with DynamoDBLocal() as local:
        client = boto3.client("dynamodb", **local.client_kwargs())
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def transfer(client: Any, minimum_balance: int, invoice: str) -> None:
    """Write an invoice only if tenant A's balance is at least `minimum_balance`, in one transaction."""
    client.transact_write_items(
        TransactItems=[
            {
                "ConditionCheck": {
                    "TableName": TABLE,
                    "Key": {"pk": {"S": "tenant-a#balance"}},
                    "ConditionExpression": "balance >= :minimum",
                    "ExpressionAttributeValues": {":minimum": {"N": str(minimum_balance)}},
                }
            },
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": invoice}}}},
        ]
    )


def test_a_failed_condition_check_cancels_the_whole_transaction(dynamodb: Any) -> None:
    # Given tenant A has a balance of 10
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "tenant-a#balance"}, "balance": {"N": "10"}})

    # When a transaction needs a balance of 100 before writing an invoice
    with pytest.raises(ClientError) as raised:
        transfer(dynamodb, minimum_balance=100, invoice="tenant-a#invoice-1")

    # Then DynamoDB cancels it, naming the condition check as the reason and nothing for the put
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["ConditionalCheckFailed", "None"]
    # And the put in the same transaction did not happen
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "tenant-a#invoice-1"}})


def test_a_passing_condition_check_commits_the_transaction(dynamodb: Any) -> None:
    # Given tenant A has a balance of 10
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "tenant-a#balance"}, "balance": {"N": "10"}})

    # When the transaction needs only 5
    transfer(dynamodb, minimum_balance=5, invoice="tenant-a#invoice-2")

    # Then the invoice was written
    assert "Item" in dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "tenant-a#invoice-2"}})


def test_stop_ends_the_process_and_closes_the_port() -> None:
    # Given a running DynamoDB Local
    local = DynamoDBLocal().start()
    port, pid = local.port, local.pid
    assert port_is_open(port) and pid is not None
    assert boto3.client("dynamodb", **local.client_kwargs()).list_tables()["TableNames"] == []

    # When it is stopped
    local.stop()

    # Then its process is gone, nothing listens on its port any more, and stopping again is harmless
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not port_is_open(port)
    local.stop()


def test_missing_java_is_named_in_the_error() -> None:
    # When the java command does not exist, then the error says Java is needed and not on PATH
    with pytest.raises(DynamoDBLocalError, match=r"Java 17\+ .*not on PATH.*install a JDK"):
        DynamoDBLocal(java="java-that-does-not-exist").start()


def test_a_missing_jar_says_to_run_make_install(tmp_path: Path) -> None:
    # When the npm package is not installed, then the error says how to install it
    with pytest.raises(DynamoDBLocalError, match="run `make install`"):
        DynamoDBLocal(install_dir=tmp_path).start()


def test_it_listens_on_loopback_only() -> None:
    # Given a running DynamoDB Local
    with DynamoDBLocal() as local:
        # Then it answers on 127.0.0.1 and not on the machine's other addresses
        assert local.bound_to_loopback
        assert port_is_open(local.port, "127.0.0.1")
        others = {address for address in _own_addresses() if not address.startswith("127.")}
        if not others:
            pytest.skip("this machine has no address but loopback to check against")
        assert all(not port_is_open(local.port, address) for address in others)


def test_a_data_dir_keeps_the_tables_across_restarts(tmp_path: Path) -> None:
    # Given DynamoDB Local with a data folder, and an item written to a table
    with DynamoDBLocal(data_dir=tmp_path / "db") as first:
        client = boto3.client("dynamodb", **first.client_kwargs())
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName=TABLE, Item={"pk": {"S": "kept"}})

    # When it is started again on the same folder
    with DynamoDBLocal(data_dir=tmp_path / "db") as second:
        client = boto3.client("dynamodb", **second.client_kwargs())
        # Then the table and its item are there, in DynamoDB Local's own database file
        assert client.get_item(TableName=TABLE, Key={"pk": {"S": "kept"}})["Item"] == {"pk": {"S": "kept"}}
    assert list((tmp_path / "db").glob("*.db"))


def _own_addresses() -> set[str]:
    """This machine's IPv4 addresses: its host name's, and the one its default route leaves from."""
    import socket

    addresses: set[str] = set()
    with contextlib.suppress(OSError):
        addresses |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP: no packet is sent, the kernel only picks the source address
        addresses.add(probe.getsockname()[0])
    return addresses
