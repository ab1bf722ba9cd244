// The API client: the key from the session, errors as ApiError, streamed answers, uploads with progress.
// Every call goes through `request`, so a 401 anywhere ends the session in one place (app.js listens).

const KEY = "docuchat.credential";
let config = { api_url: "", streaming_url: "" };

export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

export async function loadConfig() {
  const response = await fetch("/config.json", { cache: "no-cache" });
  if (response.ok) config = { ...config, ...(await response.json()) };
  return config;
}

export const session = {
  credential: () => sessionStorage.getItem(KEY),
  save: (credential) => sessionStorage.setItem(KEY, credential),
  clear: () => sessionStorage.removeItem(KEY),
};

// Called with the error when the API refuses the credential: the session is over.
let onSessionEnded = () => {};
export function whenSessionEnds(callback) {
  onSessionEnded = callback;
}

function authHeaders(credential) {
  return { Authorization: `Bearer ${credential ?? session.credential() ?? ""}` };
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, or an empty body
  }
  const error = body?.error ?? {};
  return new ApiError(response.status, error.code ?? "http_" + response.status, error.message ?? response.statusText, error.param);
}

async function request(method, path, { body, credential, signal, base } = {}) {
  let response;
  try {
    response = await fetch((base ?? config.api_url) + path, {
      method,
      headers: { ...authHeaders(credential), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (cause) {
    if (cause.name === "AbortError") throw cause;
    throw new ApiError(0, "network", "The service could not be reached.");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && credential === undefined) onSessionEnded(error);
    throw error;
  }
  return response;
}

const json = async (response) => (response.status === 204 ? null : response.json());

export const api = {
  me: (credential) => request("GET", "/v1/me", { credential }).then(json),
  conversations: () => request("GET", "/v1/conversations?limit=50").then(json),
  conversation: (id) => request("GET", `/v1/conversations/${encodeURIComponent(id)}`).then(json),
  deleteConversation: (id) => request("DELETE", `/v1/conversations/${encodeURIComponent(id)}`).then(json),
  documents: (cursor) =>
    request("GET", "/v1/documents?limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "")).then(json),
  document: (id) => request("GET", `/v1/documents/${encodeURIComponent(id)}`).then(json),
  createDocument: (body) => request("POST", "/v1/documents", { body }).then(json),
  deleteDocument: (id) => request("DELETE", `/v1/documents/${encodeURIComponent(id)}`).then(json),
  usage: (start, end) => request("GET", start && end ? `/v1/usage?start=${start}&end=${end}` : "/v1/usage").then(json),
  invoices: (cursor) =>
    request("GET", "/v1/invoices?limit=50" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "")).then(json),
};

// A streamed answer from POST /v1/chat: calls `on.citations`, `on.delta`, `on.done` as the events come.
// Resolves with the `done` event's data; rejects with an ApiError for an `error` event, or when the stream ends
// without `done` (a dropped connection: what was shown is not the whole answer).
export async function streamChat(body, on, signal) {
  const response = await request("POST", "/v1/chat", {
    body: { ...body, stream: true },
    signal,
    base: config.streaming_url || config.api_url,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let done = null;
  const dispatch = (block) => {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // keep-alive comment
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (event === "citations") on.citations?.(payload.citations ?? []);
    else if (event === "delta") on.delta?.(payload.text ?? "");
    else if (event === "done") done = payload;
    else if (event === "error") throw new ApiError(200, payload.code ?? "stream_failed", payload.message ?? "");
  };
  try {
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += value.replace(/\r\n/g, "\n");
      let split;
      while ((split = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, split));
        buffer = buffer.slice(split + 2);
      }
    }
  } catch (cause) {
    if (cause instanceof ApiError || cause.name === "AbortError") throw cause;
    throw new ApiError(0, "stream_dropped", "The connection dropped before the answer was complete.");
  }
  if (buffer.trim()) dispatch(buffer);
  if (!done) throw new ApiError(0, "stream_dropped", "The connection dropped before the answer was complete.");
  on.done?.(done);
  return done;
}

// Headers the browser sets itself and refuses from scripts.
const BROWSER_HEADERS = new Set(["content-length", "host"]);

// PUTs a file to its presigned URL with XMLHttpRequest, whose upload events report progress (fetch has none).
export function uploadFile(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(upload.method || "PUT", upload.url);
    for (const [name, value] of Object.entries(upload.headers ?? {})) {
      if (!BROWSER_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(Math.round((100 * event.loaded) / event.total));
    };
    xhr.onload = () =>
      xhr.status >= 200 && xhr.status < 300
        ? resolve()
        : reject(new ApiError(xhr.status, "upload_failed", `The storage refused the file (HTTP ${xhr.status}).`));
    xhr.onerror = () => reject(new ApiError(0, "upload_failed", "The upload could not reach the storage."));
    xhr.send(file);
  });
}
