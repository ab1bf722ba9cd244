"""A local OpenAI-compatible server for tests, benchmarks and `make dev`: deterministic, offline, standard library only.

    with FakeOpenAI() as fake:
        client = openai.OpenAI(api_key="test", base_url=fake.base_url)

What it answers:

- POST /v1/chat/completions: a `chat.completion` whose content is "[fake-llm] " followed by the first 200
  characters (whitespace collapsed) of the last user message; if that message has a line starting "Context:"
  (the RAG prompt's shape), the quote starts after "Context:" so the answer shows which passages it was given.
  Usage counts about one token per four characters (at least one per message). `max_tokens` /
  `max_completion_tokens` truncate the answer with finish_reason "length". `stream: true` streams it as
  `chat.completion.chunk`s, a word or so each (`chunk_delay_seconds` apart: a slow model, which takes as long
  in all unstreamed), then the usage
  chunk when `stream_options.include_usage` asks for it, then `data: [DONE]`.
- POST /v1/embeddings: unit vectors built by feature hashing (each word, and the whole text, adds ±1 at a few
  hash-chosen positions), so equal texts get equal vectors and texts sharing words are closer than unrelated ones.
  `dimensions` is honoured (default 1536); `encoding_format` "float" or "base64" (the official client asks base64).
- GET /v1/models and /v1/models/{id}.

Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}}: 401 without `Authorization: Bearer`,
400 for malformed JSON or invalid parameters, 404 for unknown paths. Injected failures (`fail_next`, and
`fail_model` for one model) carry `retry-after-ms: 10` so retries are fast in tests; `break_next_stream`
makes a stream die after a few chunks, by dropping the connection or by sending an error event.

`served` lists the usage of every completion it made (streamed ones included, whether or not the client read
them to the end): what a test compares metering against.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import math
import re
import struct
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from local._http_fake import FakeRequest, FakeResponse, LoopbackFake, run_cli

DEFAULT_DIMENSIONS = 1536
MAX_DIMENSIONS = 3072
MAX_EMBEDDING_INPUTS = 2048
REPLY_PREFIX = "[fake-llm] "
QUOTE_CHARS = 200
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small", "text-embedding-3-large")

_WORD = re.compile(r"\w+")
_FEATURE_HITS = 4  # positions each word touches; few enough that vectors stay cheap, enough to spread collisions
_ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded"}

Responder = Callable[[Sequence[dict[str, Any]]], str]


class InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def count_tokens(text: str) -> int:
    """About four characters a token, at least one: deterministic, close enough for usage accounting tests."""
    return max(1, math.ceil(len(text) / 4))


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only the text ones count
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def fake_reply(messages: Sequence[dict[str, Any]]) -> str:
    """The default answer: quotes the last user message, from its context block when it has one."""
    user_texts = [message_text(m) for m in messages if m.get("role") == "user"]
    text = user_texts[-1] if user_texts else ""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith("Context:"):
            text = "\n".join([stripped.removeprefix("Context:"), *lines[index + 1 :]])
            break
    quote = " ".join(text.split())[:QUOTE_CHARS].rstrip()
    return REPLY_PREFIX + (quote or "(no user message)")


def fake_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS, model: str = "") -> list[float]:
    """A deterministic unit vector (float32 precision) by feature hashing of the words and of the whole text."""
    vector = [0.0] * dimensions
    for feature in [*_WORD.findall(text.lower()), "\0" + text]:
        digest = hashlib.blake2b(f"{model}\0{feature}".encode(), digest_size=8 * _FEATURE_HITS).digest()
        for offset in range(0, len(digest), 8):
            value = int.from_bytes(digest[offset : offset + 8], "little")
            vector[value % dimensions] += 1.0 if value >> 63 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:  # every hit cancelled out: astronomically unlikely, but a zero vector has no direction
        vector[0], norm = 1.0, 1.0
    # Round through float32, as OpenAI's vectors are, so the float and base64 encodings give the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in vector))))


def openai_error(
    status: int, message: str, error_type: str, param: str | None = None, code: str | None = None
) -> FakeResponse:
    return FakeResponse(status, {"error": {"message": message, "type": error_type, "param": param, "code": code}})


class FakeOpenAI(LoopbackFake):
    """OpenAI-compatible server on 127.0.0.1 (port 0 picks a free one).

    `requests` holds (path, parsed JSON body or None, headers with lower-case names) for every request received,
    including ones answered by an injected failure. `api_keys`, when given, is the set of accepted keys; otherwise
    any non-empty bearer token is accepted. `responder` replaces `fake_reply` to script answers.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        delay_seconds: float = 0.0,
        api_keys: Collection[str] | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        responder: Responder = fake_reply,
        chunk_delay_seconds: float = 0.0,
    ) -> None:
        super().__init__(port=port, delay_seconds=delay_seconds)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.models = tuple(models)
        self.responder = responder
        self.chunk_delay_seconds = chunk_delay_seconds
        self.requests: list[tuple[str, Any, dict[str, str]]] = []
        self.served: list[dict[str, Any]] = []  # {model, prompt_tokens, completion_tokens, stream}
        self._failing_models: dict[str, tuple[int, int | None]] = {}  # model -> (status, failures left; None: all)
        self._breaks: list[tuple[int, str]] = []  # (content chunks before the break, "drop" | "error")
        self._ids = itertools.count(1)
        self._routes: dict[tuple[str, str], Callable[[Any], dict[str, Any]]] = {
            ("POST", "/v1/chat/completions"): self._chat_completion,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): lambda _: self._model_list(),
        }

    @property
    def base_url(self) -> str:
        """What `openai.OpenAI(base_url=...)` and OPENAI_BASE_URL want."""
        return self.root_url + "/v1"

    def record(self, request: FakeRequest) -> None:
        self.requests.append((request.path, request.json_or_none(), request.headers))

    def failure_response(self, status: int) -> FakeResponse:
        response = openai_error(status, f"Injected failure ({status}).", _ERROR_TYPES.get(status, "server_error"))
        response.headers["retry-after-ms"] = "10"
        return response

    def fail_model(self, model: str, status: int = 500, count: int | None = None) -> None:
        """Requests for `model` get `status` (all of them, or the next `count`); other models answer."""
        self._failing_models[model] = (status, count)

    def heal_model(self, model: str) -> None:
        self._failing_models.pop(model, None)

    def break_next_stream(self, after_chunks: int = 3, how: str = "drop") -> None:
        """The next stream stops after `after_chunks` content chunks: "drop" closes the connection mid-body,
        "error" sends an error event first (as OpenAI does when it fails mid-stream)."""
        self._breaks.append((after_chunks, how))

    def _model_failure(self, body: Any) -> FakeResponse | None:
        model = body.get("model") if isinstance(body, dict) else None
        if model not in self._failing_models:
            return None
        status, left = self._failing_models[model]
        if left is not None:
            if left <= 0:
                return None
            self._failing_models[model] = (status, left - 1)
        return self.failure_response(status)

    def handle(self, request: FakeRequest) -> FakeResponse:
        unauthorized = self._check_key(request.headers.get("authorization", ""))
        if unauthorized is not None:
            return unauthorized
        model_id = request.path.removeprefix("/v1/models/")
        if request.method == "GET" and model_id != request.path:
            return self._model(model_id)
        route = self._routes.get((request.method, request.path))
        if route is None:
            return openai_error(404, f"Unknown request URL: {request.method} {request.path}.", "invalid_request_error")
        try:
            body = request.json() if request.body else None
        except ValueError:
            return openai_error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if request.method == "POST" and not isinstance(body, dict):
            return openai_error(400, "The request body must be a JSON object.", "invalid_request_error")
        failure = self._model_failure(body) if request.path == "/v1/chat/completions" else None
        if failure is not None:
            return failure
        try:
            if request.path == "/v1/chat/completions" and isinstance(body, dict) and body.get("stream"):
                return self._stream(body)
            return FakeResponse(200, route(body))
        except InvalidRequest as error:
            return openai_error(400, str(error), "invalid_request_error", error.param, error.code)

    def _check_key(self, authorization: str) -> FakeResponse | None:
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header."
            return openai_error(401, message, "invalid_request_error", code="missing_api_key")
        if self.api_keys is not None and key not in self.api_keys:
            return openai_error(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        return None

    def _answer(self, body: dict[str, Any], stream: bool) -> tuple[str, str, str, int, int]:
        """(model, content, finish reason, prompt tokens, completion tokens) of a request, recorded as served."""
        model = _required_string(body, "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise InvalidRequest("'messages' must be a non-empty array of message objects.", "messages")
        content, finish_reason = self.responder(messages), "stop"
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and limit > 0 and count_tokens(content) > limit:
            content, finish_reason = content[: limit * 4], "length"
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        completion_tokens = count_tokens(content)
        served = {"model": model, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        self.served.append({**served, "stream": stream})
        return model, content, finish_reason, prompt_tokens, completion_tokens

    def _stream(self, body: dict[str, Any]) -> FakeResponse:
        model, content, finish_reason, prompt_tokens, completion_tokens = self._answer(body, stream=True)
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        breaking = self._breaks.pop(0) if self._breaks else None
        frame = {
            "id": f"chatcmpl-fake{next(self._ids):08d}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        words = re.findall(r"\S+\s*", content) or [content]

        def event(data: Any) -> bytes:
            return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()

        def pieces() -> Iterator[bytes | None]:
            yield event({**frame, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            for number, word in enumerate(words):
                if breaking is not None and number == breaking[0]:
                    if breaking[1] == "error":
                        yield event(
                            {
                                "error": {
                                    "message": "The server had an error while streaming.",
                                    "type": "server_error",
                                    "param": None,
                                    "code": None,
                                }
                            }
                        )
                    yield None
                    return
                if self.chunk_delay_seconds and self._stopping.wait(self.chunk_delay_seconds):
                    return
                delta = {"index": 0, "delta": {"content": word}, "finish_reason": None}
                yield event({**frame, "choices": [delta]})
            yield event({**frame, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
            if include_usage:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                yield event({**frame, "choices": [], "usage": usage})
            yield event("[DONE]")

        return FakeResponse(200, headers={"Content-Type": "text/event-stream"}, pieces=pieces())

    def _chat_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        model, content, finish_reason, prompt_tokens, completion_tokens = self._answer(body, stream=False)
        if self.chunk_delay_seconds:  # a slow model is as slow unstreamed: the whole answer, at once, at the end
            self._stopping.wait(self.chunk_delay_seconds * len(re.findall(r"\S+\s*", content)))
        return {
            "id": f"chatcmpl-fake{next(self._ids):08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        model = _required_string(body, "model")
        texts = _embedding_inputs(body.get("input"))
        dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_DIMENSIONS:
            raise InvalidRequest(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.", "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
        data = []
        for index, text in enumerate(texts):
            vector: list[float] | str = fake_embedding(text, dimensions, model)
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count_tokens(text) for text in texts)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _model_list(self) -> dict[str, Any]:
        return {"object": "list", "data": [_model_object(name) for name in self.models]}

    def _model(self, model_id: str) -> FakeResponse:
        if model_id not in self.models:
            message = f"The model '{model_id}' does not exist or you do not have access to it."
            return openai_error(404, message, "invalid_request_error", code="model_not_found")
        return FakeResponse(200, _model_object(model_id))


def _required_string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"You must provide a '{name}' parameter.", name)
    return value


def _embedding_inputs(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise InvalidRequest("'input' must be a non-empty string or a non-empty array of non-empty strings.", "input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(f"'input' must have at most {MAX_EMBEDDING_INPUTS} items.", "input")
    return texts


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake-openai"}


def main(argv: list[str] | None = None) -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", action="append", dest="api_keys", help="accept only this key (repeatable)")

    def build(args: argparse.Namespace) -> FakeOpenAI:
        return FakeOpenAI(port=args.port, delay_seconds=args.delay, api_keys=args.api_keys)

    run_cli("A local OpenAI-compatible server (deterministic, offline).", 8100, build, add_arguments, argv)


if __name__ == "__main__":
    main()
