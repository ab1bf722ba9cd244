// Sign in with an API key or a JWT of the tenant's identity provider; kept in sessionStorage, never in a URL.
import { api, ApiError } from "../lib/api.js";
import { html, useState } from "../lib/html.js";
import { t } from "../lib/i18n.js";

export function SignIn({ notice, onSignedIn, languages }) {
  const [credential, setCredential] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    const value = credential.trim();
    if (!value) return;
    setBusy(true);
    setError("");
    try {
      onSignedIn(value, await api.me(value));
    } catch (failure) {
      setError(failure instanceof ApiError && (failure.status === 401 || failure.status === 403) ? t("wrongKey") : t("unreachable"));
    } finally {
      setBusy(false);
    }
  };

  return html`<main class="signin">
    <div class="card">
      <h1>${t("appName")}</h1>
      ${languages}
      ${notice && html`<p class="notice" role="status">${notice}</p>`}
      <form onSubmit=${submit}>
        <label for="credential">${t("apiKey")}</label>
        <input id="credential" type="password" autocomplete="off" spellcheck="false" required
          aria-describedby="credential-hint" value=${credential} onInput=${(e) => setCredential(e.target.value)} />
        <p id="credential-hint" class="hint">${t("apiKeyHint")}</p>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" class="primary" disabled=${busy}>${busy ? t("signingIn") : t("signIn")}</button>
      </form>
    </div>
  </main>`;
}
