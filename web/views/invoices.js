// Invoices: one a day, in Tomans, with their lines, status and Zibal payment link.
import { api, ApiError } from "../lib/api.js";
import { html, useEffect, useState } from "../lib/html.js";
import { date, number, t, tomans } from "../lib/i18n.js";

// The link comes from our own billing (Zibal's start page); only a web address is ever made a link.
const SAFE_PAYMENT_LINK = /^https?:\/\//i;

function Invoice({ item }) {
  const invoice = item.invoice;
  const status = t("invoiceStatus")[invoice.status] ?? invoice.status;
  return html`<article class="invoice" aria-labelledby=${"inv-" + invoice.invoice_id}>
    <header>
      <h2 id=${"inv-" + invoice.invoice_id}>${date(invoice.period)}</h2>
      <span class=${"status " + invoice.status}>${status}</span>
      <strong class="amount">${tomans(invoice.amount_tomans)}</strong>
      ${invoice.status === "open" && invoice.payment_url && SAFE_PAYMENT_LINK.test(invoice.payment_url) &&
        html`<a class="button primary" href=${invoice.payment_url} target="_blank" rel="noopener noreferrer">${t("pay")}</a>`}
    </header>
    ${invoice.payment_error && html`<p class="error">${invoice.payment_error}</p>`}
    <details>
      <summary>${t("lines")} (${number(invoice.lines.length)})</summary>
      <table class="table">
        <thead><tr><th scope="col">${t("kind")}</th><th scope="col">${t("day")}</th><th scope="col">${t("model")}</th>
          <th scope="col">${t("inputTokens")}</th><th scope="col">${t("outputTokens")}</th><th scope="col">${t("amount")}</th></tr></thead>
        <tbody>${invoice.lines.map((line) => html`<tr>
          <td>${line.kind}</td><td>${date(line.usage_day)}</td><td>${line.model}</td>
          <td>${number(line.input_tokens)}</td><td>${number(line.output_tokens)}</td><td>${tomans(line.amount_tomans)}</td></tr>`)}</tbody>
      </table>
    </details>
  </article>`;
}

export function InvoicesView() {
  const [items, setItems] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [problem, setProblem] = useState("");

  const load = (from) =>
    api
      .invoices(from)
      .then((page) => {
        setItems((all) => [...(from ? all : []), ...page.invoices]);
        setCursor(page.next_cursor);
      })
      .catch((error) => {
        setItems((all) => all ?? []);
        setProblem(error instanceof ApiError && error.status === 403 ? t("forbidden") : error.message);
      });
  useEffect(() => void load(null), []);

  return html`<section class="invoices">
    <h1>${t("invoices")}</h1>
    ${problem && html`<p class="error" role="alert">${problem}</p>`}
    ${items === null ? html`<p>${t("loading")}</p>` : items.length === 0 ? html`<p class="hint">${t("noInvoices")}</p>` : items.map((item) => html`<${Invoice} key=${item.invoice.invoice_id} item=${item} />`)}
    ${cursor && html`<button type="button" onClick=${() => load(cursor)}>${t("loadMore")}</button>`}
  </section>`;
}
