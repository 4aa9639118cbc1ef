// Reports: the head-end's named reports (settlement, sales by block, free
// water, debt, tokens, vends journal) over a date range, as a table with
// totals and a CSV download made in the browser.
import { h, clear, field, errorBox, table, money, when } from "./dom.js";
import * as api from "./api.js";

function isoDate(d) {
  return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
}

export async function reportsPage(ctx) {
  const { main } = ctx;
  const list = await api.get("/reports");
  const now = new Date();
  const name = field("Report", { tag: "select", id: "report-name", options: list.map(r => ({ value: r.name, label: r.title })) });
  const from = field("From", { type: "date", id: "report-from", value: isoDate(new Date(now.getFullYear(), now.getMonth(), 1)), required: true });
  const to = field("To (inclusive)", { type: "date", id: "report-to", value: isoDate(now), required: true });
  const vendor = field("Vending point (optional)", { id: "report-vendor", autocomplete: "off" });
  const out = h("section", { class: "card", id: "report-out", "aria-live": "polite" });
  const sync = () => {
    const info = list.find(r => r.name === name.input.value);
    vendor.input.disabled = !info?.filters?.includes("vendor");
  };
  name.input.addEventListener("change", sync);
  sync();
  clear(main).append(h("h1", {}, "Reports"),
    h("form", { class: "card", id: "report-form", onsubmit: async e => {
      e.preventDefault();
      const q = new URLSearchParams({ from: from.input.value, to: to.input.value });
      if (!vendor.input.disabled && vendor.input.value.trim()) q.set("vendor", vendor.input.value.trim());
      clear(out).append(h("p", { class: "muted" }, "Running…"));
      try {
        const doc = await api.get("/reports/" + api.q(name.input.value) + "?" + q);
        q.set("format", "csv");
        clear(out).append(render(doc, "/api/v1/reports/" + api.q(name.input.value) + "/export?" + q));
      } catch (err) { clear(out).append(errorBox(err)); }
    } }, h("div", { class: "row" }, name.el, from.el, to.el, vendor.el, h("button", { type: "submit", class: "primary" }, "Run"))),
    out);
}

const isMoney = c => /_cents$/.test(c);

function cell(col, v) {
  if (v == null) return "";
  if (isMoney(col)) return money(v);
  if (col === "time") return when(v);
  return String(v);
}

function render(doc, exportURL) {
  const cols = doc.columns || [];
  const rows = doc.rows || [];
  const t = table(cols.map(c => ({ label: c.name.replace(/_cents$/, "").replace(/_/g, " "), value: r => cell(c.name, r[c.name]), num: c.sum || isMoney(c.name) })), rows,
    { empty: "Nothing in this period.", class: "report" });
  if (rows.length && doc.totals) {
    const tbody = t.querySelector("tbody");
    tbody.append(h("tr", { class: "total" }, cols.map((c, i) => h("td", { class: c.sum || isMoney(c.name) ? "num" : undefined },
      i === 0 ? "Total" : c.name in doc.totals ? cell(c.name, doc.totals[c.name]) : ""))));
  }
  const csv = [cols.map(c => c.name).join(",")].concat(rows.map(r => cols.map(c => csvField(r[c.name])).join(","))).join("\r\n") + "\r\n";
  const link = h("a", { class: "button", id: "report-csv", download: doc.report + ".csv", href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })) }, "Download these rows (CSV)");
  // The head-end streams reports of any size beside the JSON route.
  const all = h("a", { class: "button", id: "report-export", href: exportURL, download: doc.report + ".csv" }, "Export the whole report (CSV)");
  return h("div", {}, h("h2", {}, doc.title || doc.report), h("p", { class: "muted" }, rows.length + " rows"), t, h("div", { class: "actions" }, link, all));
}

function csvField(v) {
  if (v == null) return "";
  const s = String(v);
  // A leading = + - @ would make a spreadsheet run the cell as a formula.
  const safe = /^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s) ? "'" + s : s;
  return /[",\r\n]/.test(safe) ? '"' + safe.replace(/"/g, '""') + '"' : safe;
}
