// DOM helpers. Text always goes in through text nodes, never parsed as HTML,
// so data from the API (names, addresses, audit details) cannot become markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let fieldSeq = 0;

// field makes a labelled input (or select, with opts.options); other
// attributes go to the control.
export function field(label, attrs = {}, hint) {
  const { tag = "input", options, ...rest } = attrs;
  const id = rest.id || "f" + ++fieldSeq;
  const hintId = hint ? id + "-hint" : undefined;
  const input = h(tag, { ...rest, id, "aria-describedby": hintId ?? rest["aria-describedby"] });
  if (tag === "select") {
    for (const o of options || []) {
      const value = typeof o === "object" ? o.value : o;
      input.append(h("option", { value, selected: value === rest.value || undefined }, typeof o === "object" ? o.label : o));
    }
  }
  const el = h("div", { class: "field" }, h("label", { for: id }, label), input, hint && h("span", { class: "hint", id: hintId }, hint));
  return { el, input };
}

// Money is integer cents all the way; these only format and parse text.
export function money(cents, currency) {
  if (cents === undefined || cents === null) return "—";
  const neg = cents < 0;
  const c = Math.abs(Math.trunc(cents));
  const whole = Math.trunc(c / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, " ");
  const s = whole + "." + String(c % 100).padStart(2, "0");
  return (neg ? "−" : "") + (currency ? currency + " " : "") + s;
}

// parseCents reads "300", "300.5" or "1 234,50" into cents, or null.
export function parseCents(text) {
  const t = String(text).trim().replace(/[\s\u00a0]/g, "").replace(",", ".");
  const m = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(t);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || "0").padEnd(2, "0"));
}

export function litres(l) {
  if (l === undefined || l === null) return "—";
  if (Math.abs(l) >= 1000) return (l / 1000).toLocaleString("en", { maximumFractionDigits: 3 }) + " kl";
  return l + " l";
}

export function kl(l) { return (l / 1000).toLocaleString("en", { maximumFractionDigits: 3 }); }

// groupToken shows a 20-digit STS token as five groups of four.
export function groupToken(t) {
  const d = String(t || "").replace(/\D/g, "");
  return d.match(/.{1,4}/g)?.join(" ") ?? "";
}

// groupPAN groups an 18-digit meter number the way it is printed on meters.
export function groupPAN(n) {
  return /^\d{18}$/.test(n) ? n.replace(/^(\d{6})(\d{4})(\d{4})(\d{4})$/, "$1 $2 $3 $4") : n;
}

export function when(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function day(t) { return new Date(t).toISOString().slice(0, 10); }

export function toast(msg) {
  const el = document.getElementById("toast");
  el.textContent = msg;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, 4000);
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err?.message || String(err));
}

export function table(columns, rows, opts = {}) {
  if (!rows || rows.length === 0) return h("p", { class: "empty" }, opts.empty || "Nothing yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: opts.class },
    opts.caption && h("caption", { class: "muted" }, opts.caption),
    h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col", class: c.num ? "num" : undefined }, c.label)))),
    h("tbody", {}, rows.map(r => h("tr", { class: opts.rowClass?.(r) }, columns.map(c => {
      const v = c.value(r);
      return h("td", { class: [c.num && "num", c.mono && "mono", c.nowrap && "nowrap"].filter(Boolean).join(" ") || undefined }, v);
    }))))));
}

export function badge(text, kind) { return h("span", { class: "badge " + (kind || "") }, text); }
