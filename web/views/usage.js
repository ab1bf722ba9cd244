// Usage: tokens per day and model for a chosen period, as a stacked bar chart (with the figures as a table
// beside it, for screen readers and for copying), and the month's token budget.
import { api, ApiError } from "../lib/api.js";
import { html, useEffect, useState } from "../lib/html.js";
import { date, number, shortDate, t } from "../lib/i18n.js";

// Distinguishable, and each at least 3:1 against the white background (WCAG's non-text contrast).
const PALETTE = ["#1f4e8c", "#b45309", "#047857", "#9d174d", "#5b21b6", "#0e7490", "#4d7c0f", "#7c2d12"];
const CHART = { width: 720, height: 260, left: 56, bottom: 28, top: 12 };

const isoDay = (d) => d.toISOString().slice(0, 10);

function daysBetween(start, end) {
  const days = [];
  for (let d = new Date(start + "T00:00:00Z"); isoDay(d) <= end; d = new Date(d.getTime() + 86400000)) days.push(isoDay(d));
  return days;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

export function Chart({ start, end, rows }) {
  const days = daysBetween(start, end);
  const models = [...new Set(rows.map((r) => r.model))].sort();
  const byDay = new Map(days.map((d) => [d, new Map()]));
  rows.forEach((r) => byDay.get(r.day)?.set(r.model, (byDay.get(r.day).get(r.model) ?? 0) + r.total_tokens));
  const total = rows.reduce((sum, r) => sum + r.total_tokens, 0);
  const max = niceMax(Math.max(0, ...days.map((d) => [...byDay.get(d).values()].reduce((a, b) => a + b, 0))));
  const plotWidth = CHART.width - CHART.left - 8;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const slot = plotWidth / days.length;
  const barWidth = Math.max(2, slot * 0.7);
  const y = (value) => CHART.top + plotHeight - (value / max) * plotHeight;
  const labelEvery = Math.ceil(days.length / 8);

  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${CHART.width} ${CHART.height}`} role="img" aria-label=${t("chartLabel", number(total), number(days.length))}>
      ${[0, 0.5, 1].map((f) => html`<g class="grid">
        <line x1=${CHART.left} x2=${CHART.width - 8} y1=${y(max * f)} y2=${y(max * f)} />
        <text x=${CHART.left - 6} y=${y(max * f) + 4} text-anchor="end">${number(max * f)}</text>
      </g>`)}
      ${days.map((day, i) => {
        let base = 0;
        const x = CHART.left + i * slot + (slot - barWidth) / 2;
        return html`<g class="bar">
          ${models.map((model, m) => {
            const value = byDay.get(day).get(model) ?? 0;
            if (!value) return null;
            const top = y(base + value);
            const height = y(base) - top;
            base += value;
            return html`<rect x=${x} y=${top} width=${barWidth} height=${Math.max(1, height)} fill=${PALETTE[m % PALETTE.length]}>
              <title>${date(day)} · ${model}: ${number(value)}</title></rect>`;
          })}
          ${i % labelEvery === 0 && html`<text class="axis" x=${x + barWidth / 2} y=${CHART.height - 8} text-anchor="middle">${shortDate(day)}</text>`}
        </g>`;
      })}
    </svg>
    <figcaption>
      <ul class="legend">
        ${models.map((model, m) => html`<li><span class=${"swatch swatch-" + (m % PALETTE.length)} aria-hidden="true"></span>${model}</li>`)}
      </ul>
    </figcaption>
  </figure>`;
}

function Budget({ budget }) {
  if (!budget) return null;
  if (budget.limit == null) return html`<p>${t("budgetUnlimited")}</p>`;
  return html`<div class="budget">
    <label for="budget-meter">${t("budget")} (${budget.period})</label>
    <meter id="budget-meter" min="0" max=${budget.limit} value=${budget.used + budget.reserved} high=${budget.limit * 0.8}
      optimum="0"></meter>
    <p>${t("budgetLine", number(budget.used), number(budget.limit), number(budget.reserved), number(budget.remaining))}</p>
  </div>`;
}

export function UsageView() {
  // No period at first: the API's default is the last 30 billing days, in the billing timezone (Tehran's day can
  // be a day ahead of the browser's clock), and the form shows the period it answered for.
  const [[start, end], setPeriod] = useState([null, null]);
  const [form, setForm] = useState({ start: "", end: "" });
  const [usage, setUsage] = useState(null);
  const [problem, setProblem] = useState("");

  useEffect(() => {
    setProblem("");
    api
      .usage(start, end)
      .then((answer) => {
        setUsage(answer);
        if (!start) setForm({ start: answer.start, end: answer.end });
      })
      .catch((error) => setProblem(error instanceof ApiError && error.status === 403 ? t("forbidden") : error.message));
  }, [start, end]);

  const submit = (event) => {
    event.preventDefault();
    if (form.start && form.end) setPeriod([form.start, form.end]);
  };

  return html`<section class="usage">
    <h1>${t("usage")}</h1>
    <form class="period" onSubmit=${submit}>
      <label for="usage-start">${t("from")}</label>
      <input id="usage-start" type="date" required value=${form.start} max=${form.end}
        onInput=${(e) => setForm({ ...form, start: e.target.value })} />
      <label for="usage-end">${t("to")}</label>
      <input id="usage-end" type="date" required value=${form.end} min=${form.start}
        onInput=${(e) => setForm({ ...form, end: e.target.value })} />
      <button type="submit">${t("show")}</button>
    </form>
    ${problem && html`<p class="error" role="alert">${problem}</p>`}
    ${usage && html`
      <${Budget} budget=${usage.budget} />
      <h2>${t("tokensPerDay")}</h2>
      <p>${t("totalTokens")}: <strong>${number(usage.total_tokens)}</strong></p>
      ${usage.days.length === 0
        ? html`<p class="hint">${t("noUsage")}</p>`
        : html`<${Chart} start=${usage.start} end=${usage.end} rows=${usage.days} />
          <details>
            <summary>${t("tokensPerDay")}</summary>
            <table class="table">
              <thead><tr><th scope="col">${t("day")}</th><th scope="col">${t("model")}</th>
                <th scope="col">${t("inputTokens")}</th><th scope="col">${t("outputTokens")}</th><th scope="col">${t("tokens")}</th></tr></thead>
              <tbody>${usage.days.map((d) => html`<tr><td>${date(d.day)}</td><td>${d.model}</td>
                <td>${number(d.input_tokens)}</td><td>${number(d.output_tokens)}</td><td>${number(d.total_tokens)}</td></tr>`)}</tbody>
            </table>
          </details>`}`}
  </section>`;
}
