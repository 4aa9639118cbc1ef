// Meters and customers: search, the meter page (key state, chart, tokens,
// purchases, events, alerts) and the customer page.
import { h, clear, field, errorBox, money, litres, groupToken, groupPAN, when, day, table, badge } from "./dom.js";
import { dailyChart, lastDays } from "./chart.js";
import * as api from "./api.js";
import { registryForms } from "./registry.js";

export async function metersPage(ctx) {
  const { main } = ctx;
  const f = field("Meter number, account or name", { id: "meter-search", type: "search", autofocus: true, autocomplete: "off" });
  const out = h("div", { "aria-live": "polite" });
  clear(main).append(h("h1", {}, "Meters"),
    h("form", { class: "row card", role: "search", onsubmit: async e => {
      e.preventDefault();
      clear(out).append(h("p", { class: "muted" }, "Searching…"));
      try {
        const ms = await api.get("/meters?q=" + api.q(f.input.value.trim()) + "&limit=100");
        clear(out).append(meterTable(ms || []));
      } catch (err) { clear(out).append(errorBox(err)); }
    } }, f.el, h("button", { type: "submit", class: "primary" }, "Search")),
    out);
  const forms = await registryForms(ctx.role);
  if (forms) main.append(forms);
}

function meterTable(ms) {
  return table([
    { label: "Meter", value: m => h("a", { href: "#/meters/" + encodeURIComponent(m.number), class: "mono" }, groupPAN(m.number)) },
    { label: "Kind", value: m => m.kind.toUpperCase() },
    { label: "Customer", value: m => m.customer ? h("a", { href: "#/customers/" + encodeURIComponent(m.customer) }, m.customer) : "—" },
    { label: "Area", value: m => m.area || "—" },
    { label: "Tariff", value: m => m.tariff },
    { label: "Key", value: m => m.kind === "sts" ? "KRN " + m.krn + " / base " + m.base_date : "v" + m.key_version },
    { label: "Status", value: m => statusBadge(m.status) },
  ], ms, { empty: "No meters match." });
}

function statusBadge(st) {
  return badge(st || "—", st === "active" ? "ok" : st === "blocked" ? "bad" : "warn");
}

export async function customerPage(ctx) {
  const { main, params } = ctx;
  const d = await api.get("/customers/" + api.q(params[0]));
  const c = d.customer;
  clear(main).append(h("h1", {}, c.name),
    h("section", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Account"), h("dd", {}, c.account),
      h("dt", {}, "Address"), h("dd", {}, c.address || "—"),
      h("dt", {}, "Phone"), h("dd", {}, c.phone || "—"),
      h("dt", {}, "Area"), h("dd", {}, c.area || "—"),
      h("dt", {}, "Arrears"), h("dd", {}, money(c.debt_cents)))),
    h("section", { class: "card" }, h("h2", {}, "Meters"), meterTable(d.meters || [])));
}

// Telemetry routes arrive with their own release; the page looks them up in
// the OpenAPI document and says "no data yet" until they exist.
function telemetryRoutes() {
  return {
    readings: api.find("GET", /^\/meters\/\{[a-z_]+\}\/(readings|consumption|usage|daily)$/),
    events: api.find("GET", /^\/meters\/\{[a-z_]+\}\/events$/),
    allAlerts: api.find("GET", /^\/alerts$/),
  };
}

export async function meterPage(ctx) {
  const { main, params, role } = ctx;
  const number = params[0];
  const m = await api.get("/meters/" + api.q(number));
  const tr = telemetryRoutes();
  const sections = {
    chart: h("section", { class: "card", id: "chart-section" }, h("h2", {}, "Water per day (last 30 days)"), h("p", { class: "muted" }, "Loading…")),
    tokens: h("section", { class: "card", id: "tokens-section" }, h("h2", {}, "Tokens and vouchers issued")),
    purchases: h("section", { class: "card", id: "purchases-section" }, h("h2", {}, "Purchases")),
    events: h("section", { class: "card", id: "events-section" }, h("h2", {}, "Events")),
    alerts: h("section", { class: "card", id: "alerts-section" }, h("h2", {}, "Alerts")),
  };
  clear(main).append(
    h("h1", {}, "Meter ", h("span", { class: "mono" }, groupPAN(m.number))),
    h("div", { class: "cols" },
      h("section", { class: "card", id: "meter-facts" }, h("h2", {}, "Details"), h("dl", { class: "facts" },
        h("dt", {}, "Kind"), h("dd", {}, m.kind.toUpperCase()),
        h("dt", {}, "Status"), h("dd", {}, statusBadge(m.status)),
        h("dt", {}, "Customer"), h("dd", {}, m.customer ? h("a", { href: "#/customers/" + encodeURIComponent(m.customer) }, m.customer) : "not assigned"),
        h("dt", {}, "Tariff"), h("dd", {}, m.tariff),
        h("dt", {}, "Area"), h("dd", {}, m.area || "—"))),
      h("section", { class: "card", id: "meter-key" }, h("h2", {}, "Key"), h("dl", { class: "facts" },
        m.kind === "sts" ? [
          h("dt", {}, "Supply group"), h("dd", {}, m.supply_group || "—"),
          h("dt", {}, "Key revision (KRN)"), h("dd", { id: "meter-krn" }, String(m.krn)),
          h("dt", {}, "Tariff index"), h("dd", {}, String(m.ti)),
          h("dt", {}, "Base date"), h("dd", {}, String(m.base_date)),
          h("dt", {}, "Last TID"), h("dd", {}, m.last_tid ? String(m.last_tid) : "—"),
        ] : [
          h("dt", {}, "Voucher sequence"), h("dd", {}, String(m.voucher_sequence || 0)),
        ],
        h("dt", {}, "Key version"), h("dd", {}, String(m.key_version))),
        ctx.role === "vendor" && api.can(role, "POST", "/purchases") ? h("p", {}, h("a", { class: "button", href: "#/vend" }, "Vend to this meter")) : null)),
    sections.chart, sections.alerts, sections.tokens, sections.purchases, sections.events);

  const path = p => api.fill(p, { number });
  let tokens = null;
  if (api.can(role, "GET", "/meters/{number}/tokens")) {
    try {
      tokens = await api.get(path("/meters/{number}/tokens") + "?limit=200");
      sections.tokens.append(table([
        { label: "Issued", value: t => when(t.created_at) },
        { label: "Kind", value: t => t.kind.replace("_", " ") },
        { label: "Token / voucher", value: t => t.token ? groupToken(t.token) : "voucher #" + t.sequence, mono: true },
        { label: "TID", value: t => t.tid || "—", num: true },
        { label: "Water", value: t => t.litres ? litres(t.litres) : "—", num: true },
        { label: "Purchase", value: t => t.purchase_id ? h("a", { href: "#/receipts/" + t.purchase_id }, "#" + t.purchase_id) : (t.request_id ? "request " + t.request_id : "—") },
        { label: "Delivered", value: t => t.delivered_at ? when(t.delivered_at) : "—" },
      ], tokens, { empty: "No tokens issued to this meter yet.", class: "tokens-table" }));
    } catch (e) { sections.tokens.append(errorBox(e)); }
  } else {
    sections.tokens.append(h("p", { class: "empty" }, "Your role does not list tokens."));
  }

  if (api.can(role, "GET", "/meters/{number}/purchases")) {
    api.get(path("/meters/{number}/purchases")).then(ps => sections.purchases.append(table([
      { label: "When", value: p => when(p.created_at) },
      { label: "Receipt", value: p => api.can(role, "GET", "/purchases/{id}") ? h("a", { href: "#/receipts/" + p.id }, "#" + p.id) : "#" + p.id },
      { label: "Tendered", value: p => money(p.tendered_cents), num: true },
      { label: "Paid", value: p => money(p.paid_cents), num: true },
      { label: "Water", value: p => litres(p.litres), num: true },
      { label: "State", value: p => p.state },
    ], ps, { empty: "No purchases yet." })), e => sections.purchases.append(errorBox(e)));
  } else sections.purchases.remove();

  // Chart: consumption from telemetry when the head-end has it, credit
  // issued per day from the tokens.
  let readings = null;
  if (tr.readings && api.can(role, "GET", tr.readings)) {
    readings = await api.get(path(tr.readings)).catch(() => null);
  }
  const days = lastDays(30).map(date => ({ date, credit: 0 }));
  const byDate = new Map(days.map(d => [d.date, d]));
  for (const t of tokens || []) {
    const d = byDate.get(day(t.created_at));
    if (d && t.litres && t.kind !== "key_change") d.credit += t.litres;
  }
  mergeReadings(readings, byDate);
  const any = days.some(d => d.credit || d.consumption != null);
  sections.chart.querySelector("p")?.remove();
  if (any) {
    sections.chart.append(dailyChart(days, { id: "meter-chart", title: "Water per day for meter " + m.number }));
  } else {
    sections.chart.append(h("p", { class: "empty", id: "chart-empty" }, "No data yet: nothing issued in the last 30 days" + (tr.readings ? " and no readings received." : "; readings appear here once the head-end's API serves them.")));
  }

  listSection(sections.events, tr.events, role, path, "No events reported yet.", "No data yet: this head-end's API does not serve meter events yet.");
  if (!tr.allAlerts) sections.alerts.append(h("p", { class: "empty" }, "No data yet: the head-end does not raise alerts yet."));
  else if (!api.can(role, "GET", tr.allAlerts)) sections.alerts.remove();
  else {
    try {
      const r = await api.get(tr.allAlerts + "?meter=" + api.q(number) + "&limit=50");
      const rows = Array.isArray(r) ? r : r?.alerts || [];
      sections.alerts.append(table([
        { label: "Last seen", value: a => when(a.last_at), nowrap: true },
        { label: "Rule", value: a => (a.rule || "").replace(/[_-]/g, " ") },
        { label: "Severity", value: a => badge(a.severity || "—", a.severity === "critical" ? "bad" : a.severity === "warning" ? "warn" : "") },
        { label: "Summary", value: a => a.summary || "" },
        { label: "State", value: a => badge(a.state, a.state === "resolved" ? "ok" : a.state === "acknowledged" ? "warn" : "bad") },
      ], rows, { empty: "No alerts for this meter.", class: "meter-alerts" }),
      api.can(role, "GET", "/alerts") ? h("p", {}, h("a", { href: "#/alerts" }, "Alerts page")) : null);
    } catch (e) { sections.alerts.append(errorBox(e)); }
  }
}

// mergeReadings folds telemetry readings into the chart's days. It accepts
// daily rows ({date|day, litres|consumption_litres|used_litres, credit_litres|balance_litres})
// or raw readings ({time|at, forward litres register, credit with unit 1 =
// litres}), the meter's cumulative register differenced per day.
export function mergeReadings(rows, byDate) {
  if (!Array.isArray(rows)) rows = rows?.days || rows?.readings || null;
  if (!Array.isArray(rows)) return;
  const raw = [];
  for (const r of rows) {
    const date = r.date || r.day;
    if (date) {
      const d = byDate.get(String(date).slice(0, 10));
      if (!d) continue;
      const used = r.consumption_litres ?? r.used_litres ?? r.litres ?? r.consumption;
      if (used != null) d.consumption = (d.consumption || 0) + used;
      const bal = r.credit_litres ?? r.balance_litres;
      if (bal != null) d.balance = bal;
    } else if (r.at || r.time || r.read_at) raw.push(r);
  }
  raw.sort((a, b) => new Date(a.at || a.time || a.read_at) - new Date(b.at || b.time || b.read_at));
  let prev = null;
  for (const r of raw) {
    const d = byDate.get(day(r.at || r.time || r.read_at));
    const total = r.forward_litres ?? r.forward ?? r.total_litres ?? r.register_litres ?? r.volume_litres;
    if (d && total != null && prev != null && total >= prev) d.consumption = (d.consumption || 0) + (total - prev);
    if (total != null) prev = total;
    // A meter that keeps credit in litres (unit 1) reports its balance.
    const bal = r.credit_litres ?? r.balance_litres ?? (r.unit === 1 || r.unit === "litres" ? r.credit : undefined);
    if (d && bal != null) d.balance = bal;
  }
}

async function listSection(sec, template, role, path, empty, missing) {
  if (!template) { sec.append(h("p", { class: "empty" }, missing)); return; }
  if (!api.can(role, "GET", template)) { sec.append(h("p", { class: "empty" }, "Your role does not list these.")); return; }
  try {
    const rows = await api.get(path(template));
    sec.append(autoTable(Array.isArray(rows) ? rows : rows?.items || [], empty));
  } catch (e) { sec.append(errorBox(e)); }
}

// autoTable shows rows of an API whose shape this console version does not
// know in detail: their scalar fields, times formatted.
export function autoTable(rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const keys = Object.keys(rows[0]).filter(k => rows.some(r => r[k] !== null && typeof r[k] !== "object")).slice(0, 8);
  return table(keys.map(k => ({
    label: k.replace(/_/g, " "),
    value: r => /(_at|^at|time)$/.test(k) && r[k] ? when(r[k]) : (r[k] ?? "—"),
  })), rows, { empty });
}
