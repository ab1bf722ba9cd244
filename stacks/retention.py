"""How long things live per stage: what a stack removal keeps, and how long logs stay."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from stacks.stage_config import StageConfig

# CloudWatch Logs accepts only these retention periods.
_LOG_RETENTION_BY_DAYS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def removal_policy(stage: StageConfig) -> RemovalPolicy:
    """Stages that keep their data (prod) keep it even when the stack is deleted."""
    return RemovalPolicy.RETAIN if stage.retain_data else RemovalPolicy.DESTROY


def log_retention(stage: StageConfig) -> logs.RetentionDays:
    days = stage.log_retention_days
    if days not in _LOG_RETENTION_BY_DAYS:
        raise ValueError(
            f"stage {stage.name}: log_retention_days={days} is not a CloudWatch Logs retention period; "
            f"use one of {sorted(_LOG_RETENTION_BY_DAYS)}"
        )
    return _LOG_RETENTION_BY_DAYS[days]
