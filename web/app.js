// DocuChat's web app: sign-in, then Chat, Documents, Usage and Invoices. Routes are real paths (/chat, ...);
// make dev and CloudFront answer them with index.html.

import { api, ApiError, loadConfig, session, whenSessionEnds } from "./lib/api.js";
import { html, render, useEffect, useState } from "./lib/html.js";
import { LANGUAGES, language, setLanguage, t } from "./lib/i18n.js";
import { ChatView } from "./views/chat.js";
import { DocumentsView } from "./views/documents.js";
import { InvoicesView } from "./views/invoices.js";
import { SignIn } from "./views/signin.js";
import { UsageView } from "./views/usage.js";

const VIEWS = { chat: ChatView, documents: DocumentsView, usage: UsageView, invoices: InvoicesView };
const DEFAULT_VIEW = "chat";

function viewOf(path) {
  const name = path.split("/").filter(Boolean)[0];
  return VIEWS[name] ? name : DEFAULT_VIEW;
}

export function navigate(path) {
  history.pushState(null, "", path);
  dispatchEvent(new PopStateEvent("popstate"));
}

function LanguageSwitch() {
  return html`<div class="languages" role="group" aria-label=${t("language")}>
    ${LANGUAGES.map(
      (l) => html`<button type="button" lang=${l.code} aria-pressed=${language() === l.code}
        onClick=${() => { setLanguage(l.code); dispatchEvent(new Event("languagechange")); }}>${l.label}</button>`,
    )}
  </div>`;
}

function Shell({ account, view, onSignOut }) {
  const View = VIEWS[view];
  const link = (name) => html`<a href=${"/" + name} aria-current=${view === name ? "page" : undefined}
    onClick=${(event) => { event.preventDefault(); navigate("/" + name); }}>${t(name)}</a>`;
  return html`
    <header class="top">
      <span class="brand">${t("appName")}</span>
      <nav aria-label=${t("navigation")}>${Object.keys(VIEWS).map(link)}</nav>
      <${LanguageSwitch} />
      <button type="button" class="quiet" onClick=${onSignOut}>${t("signOut")}</button>
    </header>
    <main id="main"><${View} account=${account} key=${view} /></main>`;
}

function App() {
  const [account, setAccount] = useState(null);
  const [checking, setChecking] = useState(Boolean(session.credential()));
  const [notice, setNotice] = useState("");
  const [view, setView] = useState(viewOf(location.pathname));
  const [, redraw] = useState(0);

  useEffect(() => {
    const onRoute = () => setView(viewOf(location.pathname));
    const onLanguage = () => redraw((n) => n + 1);
    addEventListener("popstate", onRoute);
    addEventListener("languagechange", onLanguage);
    whenSessionEnds(() => {
      session.clear();
      setAccount(null);
      setNotice(t("sessionEnded"));
    });
    if (session.credential()) {
      api
        .me()
        .then(setAccount)
        .catch((error) => setNotice(error instanceof ApiError && error.status === 401 ? t("sessionEnded") : t("unreachable")))
        .finally(() => setChecking(false));
    }
    return () => {
      removeEventListener("popstate", onRoute);
      removeEventListener("languagechange", onLanguage);
    };
  }, []);

  const signedIn = (credential, me) => {
    session.save(credential);
    setNotice("");
    setAccount(me);
    if (location.pathname === "/" || location.pathname === "/signin") navigate("/" + DEFAULT_VIEW);
  };
  const signOut = () => {
    session.clear();
    setAccount(null);
    setNotice("");
  };

  if (checking) return html`<p class="boot">${t("loading")}</p>`;
  if (!account) return html`<${SignIn} notice=${notice} onSignedIn=${signedIn} languages=${html`<${LanguageSwitch} />`} />`;
  return html`<${Shell} account=${account} view=${view} onSignOut=${signOut} />`;
}

loadConfig()
  .catch(() => null) // no config.json: the API is on this origin
  .then(() => {
    const root = document.getElementById("app");
    root.textContent = ""; // the "Loading" line; Preact renders beside what a container holds
    render(html`<${App} />`, root);
  });
