"""Who may call, and how much: keys, tenants' own tokens, scopes, rate limits and monthly token budgets.

keys.py           API keys: issued once, stored as a hash, with scopes, an expiry and limits of their own
tokens.py         JWTs of a tenant's identity provider, checked against its JWKS
authenticator.py  a presented credential -> a Principal (tenant, scopes, effective limits)
limits.py         requests per minute and hour, per key, counted in DynamoDB
budgets.py        monthly token budgets that cannot be overrun: reserve before the model, settle after
"""
