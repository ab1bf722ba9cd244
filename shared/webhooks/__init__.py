"""Signed webhooks: a tenant's URL told of its events, through a queue, with retries for a day and more.

    signing.py   DocuChat-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    service.py   the tenant's webhook, emitting events, delivering them (and the emails some events carry)

Events: escalation.created, budget.threshold, invoice.created. Each delivery is a JSON body
{id, type, created, data}; `id` is its idempotency id (also in the DocuChat-Webhook-Id header).
"""
