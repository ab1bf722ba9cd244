"""The chat pipeline: from a question to an answer with citations, metered.

service.py      POST /v1/chat: conversation, follow-up, retrieval, cache, answer; buffered or streamed
completions.py  POST /v1/chat/completions and GET /v1/models: the OpenAI-compatible door
router.py       the model chain: retries with backoff, fallback, a circuit breaker per model
responders.py   who writes the answer: an OpenAI-compatible model, or the extractive responder
prompts.py      the system prompt, and passages as delimited data (prompt-injection hygiene)
followups.py    follow-up questions made standalone before retrieval
cache.py        the response cache (LLM_CACHE_TTL)
streaming.py    the pump that reads a stream to its end, and the SSE wire format
usage.py        the usage events of one answer
"""
