"""The notices DocuChat sends tenants on its own: the budget's 80% mark (a webhook event, and an email)."""

from __future__ import annotations

from shared.webhooks.service import Email, WebhookEmitter


class BudgetNotices:
    def __init__(self, emitter: WebhookEmitter) -> None:
        self._emitter = emitter

    def budget_threshold(self, tenant_id: str, period: str, used: int, limit: int) -> None:
        share = round(100 * used / limit)
        data = {"period": period, "used": used, "limit": limit, "percent": share}
        email = Email(
            subject=f"DocuChat: {share}% of your token budget for {period} is used",
            body=(
                f"Your organisation has used {used:,} of its {limit:,} tokens for {period} ({share}%).\n"
                "When the budget is spent, chats and new documents are refused until the next month, "
                "or until the budget is raised."
            ),
        )
        self._emitter.emit(tenant_id, "budget.threshold", data, email=email)
