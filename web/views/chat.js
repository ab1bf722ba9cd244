// Chat: answers stream in as they are written, with Stop and Regenerate; citations open a preview of the passage.
import { api, ApiError, streamChat } from "../lib/api.js";
import { html, useEffect, useRef, useState } from "../lib/html.js";
import { date, t } from "../lib/i18n.js";
import { renderMarkdown } from "../lib/markdown.js";

const ROUTE_NOTES = { not_found: "routeNotFound", degraded: "routeDegraded", escalated: "routeEscalated" };

function Citations({ citations, onOpen }) {
  if (!citations?.length) return null;
  return html`<div class="citations">
    <span class="label">${t("citations")}</span>
    ${citations.map(
      (c, i) => html`<button type="button" class="citation" aria-label=${t("citationOf", i + 1, c.title)}
        title=${c.title} onClick=${() => onOpen(c, i + 1)}>[${i + 1}]</button>`,
    )}
  </div>`;
}

function CitationPreview({ citation, onClose }) {
  const dialog = useRef(null);
  useEffect(() => {
    if (citation && !dialog.current.open) dialog.current.showModal();
    if (!citation && dialog.current.open) dialog.current.close();
  }, [citation]);
  return html`<dialog ref=${dialog} class="preview" aria-labelledby="preview-title" onClose=${onClose}>
    ${citation && html`
      <h2 id="preview-title">[${citation.number}] ${citation.title}</h2>
      ${citation.page != null && html`<p class="meta">${t("page")} ${citation.page}</p>`}
      <blockquote class="snippet">${citation.snippet}</blockquote>
      <form method="dialog"><button class="primary" type="submit">${t("close")}</button></form>`}
  </dialog>`;
}

function Answer({ turn, last, busy, onCite, onRegenerate, onRetry }) {
  const note = ROUTE_NOTES[turn.route];
  return html`<article class="turn assistant" aria-busy=${turn.status === "streaming"}>
    <h3 class="who">${t("assistant")}</h3>
    ${note && html`<p class=${"route route-" + turn.route} role="note">${t(note)}</p>`}
    ${turn.status !== "failed" && html`<div class="answer" dir="auto" dangerouslySetInnerHTML=${{ __html: renderMarkdown(turn.text) }} />`}
    ${turn.status === "streaming" && html`<span class="cursor" aria-hidden="true">▍</span>`}
    ${turn.status === "stopped" && html`<p class="warning" role="status">${t("stopped")}</p>`}
    ${turn.status === "failed" && html`<div class="error" role="alert">
      <p>${turn.error}</p>
      <button type="button" onClick=${onRetry} disabled=${busy}>${t("retry")}</button>
    </div>`}
    <${Citations} citations=${turn.citations} onOpen=${onCite} />
    ${last && !busy && turn.status !== "failed" && turn.question && html`
      <button type="button" class="quiet" onClick=${onRegenerate}>${t("regenerate")}</button>`}
  </article>`;
}

function ConversationList({ items, current, onOpen, onDelete, onNew }) {
  return html`<aside class="conversations" aria-labelledby="conversations-title">
    <h2 id="conversations-title">${t("conversations")}</h2>
    <button type="button" class="primary" onClick=${onNew}>${t("newChat")}</button>
    ${items === null && html`<p class="hint">${t("loading")}</p>`}
    ${items?.length === 0 && html`<p class="hint">${t("noConversations")}</p>`}
    <ul>
      ${(items ?? []).map(
        (c) => html`<li key=${c.conversation_id} class=${c.conversation_id === current ? "current" : ""}>
          <button type="button" class="open" aria-current=${c.conversation_id === current ? "true" : undefined}
            onClick=${() => onOpen(c.conversation_id)}>
            <span class="title" dir="auto">${c.title}</span><span class="meta">${date(c.updated_at, true)}</span>
          </button>
          <button type="button" class="icon" aria-label=${t("deleteConversation") + ": " + c.title}
            onClick=${() => onDelete(c.conversation_id)}>×</button>
        </li>`,
      )}
    </ul>
  </aside>`;
}

function failureText(error) {
  if (error.code === "stream_dropped") return t("dropped");
  return error.message || t("unreachable");
}

export function ChatView({ account }) {
  const [conversations, setConversations] = useState(null); // null until the first page has come
  const [conversationId, setConversationId] = useState(null);
  const [turns, setTurns] = useState([]);
  const [draft, setDraft] = useState("");
  const [useDocuments, setUseDocuments] = useState(true);
  const [busy, setBusy] = useState(false);
  const [citation, setCitation] = useState(null);
  const [problem, setProblem] = useState("");
  const controller = useRef(null);
  const box = useRef(null);
  const end = useRef(null);

  const refresh = () =>
    api
      .conversations()
      .then((r) => setConversations(r.conversations))
      .catch((error) => {
        setConversations((shown) => shown ?? []);
        setProblem(error instanceof ApiError ? error.message : t("unreachable"));
      });
  useEffect(() => {
    refresh();
    return () => controller.current?.abort();
  }, []);
  useEffect(() => end.current?.scrollIntoView({ block: "end" }), [turns]);

  const updateLast = (change) => setTurns((all) => [...all.slice(0, -1), { ...all[all.length - 1], ...change(all[all.length - 1]) }]);

  // Asks `question`; `again` replaces the last answer instead of adding a turn (Regenerate, Retry).
  const ask = async (question, again = false) => {
    setProblem("");
    setBusy(true);
    const answer = { role: "assistant", question, text: "", citations: [], status: "streaming" };
    setTurns((all) => (again ? [...all.slice(0, -1), answer] : [...all, { role: "user", text: question }, answer]));
    controller.current = new AbortController();
    try {
      await streamChat(
        { message: question, conversation_id: conversationId ?? undefined, use_documents: useDocuments },
        {
          citations: (citations) => updateLast(() => ({ citations })),
          delta: (text) => updateLast((turn) => ({ text: turn.text + text })),
          done: (done) => {
            updateLast(() => ({ status: "done", route: done.route, model: done.model }));
            setConversationId(done.conversation_id);
          },
        },
        controller.current.signal,
      );
      refresh();
    } catch (error) {
      if (error.name === "AbortError") updateLast(() => ({ status: "stopped" }));
      else updateLast(() => ({ status: "failed", text: "", error: failureText(error) }));
    } finally {
      controller.current = null;
      setBusy(false);
      box.current?.focus();
    }
  };

  const send = (event) => {
    event?.preventDefault();
    const question = draft.trim();
    if (!question || busy) return;
    setDraft("");
    ask(question);
  };
  const onKey = (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  };
  const open = async (id) => {
    controller.current?.abort();
    try {
      const found = await api.conversation(id);
      setConversationId(id);
      setTurns(found.messages.map((m) => ({ role: m.role, text: m.content, status: "done" })));
    } catch (error) {
      setProblem(error instanceof ApiError ? error.message : t("unreachable"));
    }
  };
  const remove = async (id) => {
    try {
      await api.deleteConversation(id);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) return setProblem(error.message);
    }
    if (id === conversationId) startNew();
    refresh();
  };
  const startNew = () => {
    controller.current?.abort();
    setConversationId(null);
    setTurns([]);
    box.current?.focus();
  };

  const lastIndex = turns.length - 1;
  return html`<div class="chat">
    <${ConversationList} items=${conversations} current=${conversationId} onOpen=${open} onDelete=${remove} onNew=${startNew} />
    <section class="thread" aria-label=${t("chat")}>
      ${account.answers === "extractive" && html`<p class="notice">${t("extractive")}</p>`}
      ${problem && html`<p class="error" role="alert">${problem}</p>`}
      <div class="turns" aria-live="polite">
        ${turns.length === 0 && html`<p class="hint">${t("emptyChat")}</p>`}
        ${turns.map((turn, i) =>
          turn.role === "user"
            ? html`<article class="turn user"><h3 class="who">${t("you")}</h3><p class="question" dir="auto">${turn.text}</p></article>`
            : html`<${Answer} turn=${turn} last=${i === lastIndex} busy=${busy}
                onCite=${(c, number) => setCitation({ ...c, number })}
                onRegenerate=${() => ask(turn.question, true)} onRetry=${() => ask(turn.question, true)} />`,
        )}
        <div ref=${end}></div>
      </div>
      <form class="composer" onSubmit=${send}>
        <label for="message">${t("message")}</label>
        <textarea id="message" ref=${box} rows="3" maxlength="8000" placeholder=${t("messagePlaceholder")}
          value=${draft} onInput=${(e) => setDraft(e.target.value)} onKeyDown=${onKey}></textarea>
        <div class="actions">
          <label class="check"><input type="checkbox" checked=${useDocuments}
            onChange=${(e) => setUseDocuments(e.target.checked)} /> ${t("useDocuments")}</label>
          ${busy
            ? html`<button type="button" class="danger" onClick=${() => controller.current?.abort()}>${t("stop")}</button>`
            : html`<button type="submit" class="primary" disabled=${!draft.trim()}>${t("send")}</button>`}
        </div>
      </form>
    </section>
    <${CitationPreview} citation=${citation} onClose=${() => setCitation(null)} />
  </div>`;
}
