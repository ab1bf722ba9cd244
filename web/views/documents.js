// Documents: upload straight to storage through the presigned URL (with its percentage), follow ingestion until
// ready or failed, paste text as a document, delete one.
import { api, ApiError, uploadFile } from "../lib/api.js";
import { html, useEffect, useRef, useState } from "../lib/html.js";
import { bytes, date, number, t } from "../lib/i18n.js";

const TYPES_BY_EXTENSION = { txt: "text/plain", md: "text/markdown", markdown: "text/markdown", html: "text/html", htm: "text/html", pdf: "application/pdf" };
const POLL_MS = 1000;
const SETTLED = new Set(["ready", "failed"]);

function typeOf(file) {
  const extension = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  return TYPES_BY_EXTENSION[extension] ?? null;
}

function Status({ document: d }) {
  const label = t("statuses")[d.status] ?? d.status;
  if (d.status === "processing" && d.progress) {
    const stage = t("stages")[d.progress.stage] ?? d.progress.stage;
    return html`<span class="status processing">${label}: ${stage} ${number(d.progress.percent)}%</span>`;
  }
  if (d.status === "failed") return html`<span class="status failed">${label}: ${d.reason}</span>`;
  return html`<span class=${"status " + d.status}>${label}</span>`;
}

function PasteForm({ onAdded }) {
  const [title, setTitle] = useState("");
  const [text, setText] = useState("");
  const [format, setFormat] = useState("text/plain");
  const [error, setError] = useState("");
  const submit = async (event) => {
    event.preventDefault();
    setError("");
    try {
      onAdded(await api.createDocument({ title: title.trim(), text, content_type: format }));
      setTitle("");
      setText("");
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : t("unreachable"));
    }
  };
  return html`<details class="paste">
    <summary>${t("pasteText")}</summary>
    <form onSubmit=${submit}>
      <label for="paste-title">${t("title")}</label>
      <input id="paste-title" required maxlength="200" value=${title} onInput=${(e) => setTitle(e.target.value)} />
      <label for="paste-text">${t("text")}</label>
      <textarea id="paste-text" required rows="6" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
      <label for="paste-format">${t("format")}</label>
      <select id="paste-format" value=${format} onChange=${(e) => setFormat(e.target.value)}>
        <option value="text/plain">Text</option>
        <option value="text/markdown">Markdown</option>
        <option value="text/html">HTML</option>
      </select>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" class="primary" disabled=${!title.trim() || !text.trim()}>${t("addDocument")}</button>
    </form>
  </details>`;
}

export function DocumentsView({ account }) {
  const [documents, setDocuments] = useState(null);
  const [uploads, setUploads] = useState([]); // {name, percent}
  const [problem, setProblem] = useState("");
  const watching = useRef(new Map());
  const limit = account.uploads.max_bytes;

  const upsert = (doc) =>
    setDocuments((all) => {
      const rest = (all ?? []).filter((d) => d.document_id !== doc.document_id);
      return [doc, ...rest].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    });

  // Follows a document until it is ready or failed.
  const watch = (id) => {
    if (watching.current.has(id)) return;
    const tick = async () => {
      try {
        const doc = await api.document(id);
        upsert(doc);
        if (SETTLED.has(doc.status)) return watching.current.delete(id);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return watching.current.delete(id);
      }
      watching.current.set(id, setTimeout(tick, POLL_MS));
    };
    watching.current.set(id, setTimeout(tick, POLL_MS));
  };

  useEffect(() => {
    api
      .documents()
      .then((r) => {
        setDocuments(r.documents);
        r.documents.filter((d) => !SETTLED.has(d.status)).forEach((d) => watch(d.document_id));
      })
      .catch((error) => {
        setDocuments([]);
        setProblem(error instanceof ApiError && error.status === 403 ? t("forbidden") : error.message);
      });
    const timers = watching.current;
    return () => timers.forEach((timer) => clearTimeout(timer));
  }, []);

  const added = (doc) => {
    upsert(doc);
    watch(doc.document_id);
  };

  const upload = async (file) => {
    const type = typeOf(file);
    // Refused here, before anything is sent, with the reason.
    if (!type || !account.uploads.content_types.includes(type)) return setProblem(t("unsupportedType", file.name));
    if (file.size === 0) return setProblem(t("emptyFile", file.name));
    if (file.size > limit) return setProblem(t("tooLarge", file.name, bytes(limit)));
    setProblem("");
    const entry = { name: file.name, percent: 0 };
    setUploads((all) => [...all, entry]);
    const progress = (percent) => setUploads((all) => all.map((u) => (u === entry ? Object.assign(entry, { percent }) : u)));
    try {
      const doc = await api.createDocument({ title: file.name, size_bytes: file.size, content_type: type });
      upsert(doc);
      await uploadFile(doc.upload, file, (percent) => progress(percent));
      progress(100);
      watch(doc.document_id);
    } catch (error) {
      setProblem(error instanceof ApiError ? error.message : t("unreachable"));
    } finally {
      setUploads((all) => all.filter((u) => u !== entry));
    }
  };

  const onFiles = (event) => {
    [...event.target.files].forEach(upload);
    event.target.value = "";
  };

  const remove = async (doc) => {
    if (!confirm(t("confirmDelete", doc.title))) return;
    try {
      await api.deleteDocument(doc.document_id);
      setDocuments((all) => all.filter((d) => d.document_id !== doc.document_id));
    } catch (error) {
      setProblem(error.message);
    }
  };

  return html`<section class="documents">
    <h1>${t("documents")}</h1>
    <div class="upload">
      <label for="upload">${t("uploadDocument")}</label>
      <input id="upload" type="file" accept=".txt,.md,.markdown,.html,.htm,.pdf" multiple
        aria-describedby="upload-hint" onChange=${onFiles} />
      <p id="upload-hint" class="hint">${t("uploadHint", bytes(limit))}</p>
    </div>
    ${uploads.map(
      (u) => html`<div class="progress-row" role="status">
        <label>${t("uploading", u.name, number(u.percent))}
        <progress max="100" value=${u.percent}></progress></label>
      </div>`,
    )}
    ${problem && html`<p class="error" role="alert">${problem}</p>`}
    <${PasteForm} onAdded=${added} />
    ${documents === null
      ? html`<p>${t("loading")}</p>`
      : documents.length === 0
        ? html`<p class="hint">${t("noDocuments")}</p>`
        : html`<table class="table">
            <thead><tr>
              <th scope="col">${t("title")}</th><th scope="col">${t("status")}</th><th scope="col">${t("type")}</th>
              <th scope="col">${t("chunks")}</th><th scope="col">${t("added")}</th><th scope="col">${t("actions")}</th>
            </tr></thead>
            <tbody>
              ${documents.map(
                (d) => html`<tr key=${d.document_id} data-status=${d.status}>
                  <th scope="row" dir="auto">${d.title}</th>
                  <td><${Status} document=${d} /></td>
                  <td>${d.content_type}</td>
                  <td>${number(d.chunk_count)}</td>
                  <td>${date(d.created_at, true)}</td>
                  <td><button type="button" class="quiet" aria-label=${t("deleteDocument", d.title)}
                    onClick=${() => remove(d)}>${t("delete")}</button></td>
                </tr>`,
              )}
            </tbody>
          </table>`}
  </section>`;
}
