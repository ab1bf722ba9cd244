"""Escalation to a person (seed 003's classifier): which route a question takes, and the tickets it opens.

router.py   answer from the documents, answer directly, or escalate: rules that work offline
tickets.py  a ticket per escalation, published to the stage's SNS topic and to the tenant's webhook
"""
