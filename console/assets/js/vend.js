// Vending: find the meter, preview the tariff breakdown, issue with an
// idempotency key, print the receipt; and reprints.
import { h, clear, field, errorBox, money, parseCents, litres, kl, groupToken, groupPAN, when, table, toast } from "./dom.js";
import * as api from "./api.js";

// A purchase in flight survives a reload of the page: its key is what makes
// a retry return the same tokens instead of selling twice.
const PENDING = "sluice.pending-purchase";
const LAST = "sluice.last-purchase";

function loadPending() {
  try { return JSON.parse(sessionStorage.getItem(PENDING)); } catch { return null; }
}
function savePending(p) {
  if (p) sessionStorage.setItem(PENDING, JSON.stringify(p)); else sessionStorage.removeItem(PENDING);
}

export async function vendPage(ctx) {
  const { main } = ctx;
  const st = { meter: null, customer: null, preview: null, pending: loadPending() };

  const results = h("div", { id: "search-results", "aria-live": "polite" });
  const search = field("Customer or meter", { id: "vend-search", type: "search", autocomplete: "off", autofocus: true,
    placeholder: "meter number, name or account" });
  const searchForm = h("form", { id: "search-form", class: "row", role: "search", onsubmit: async e => {
    e.preventDefault();
    await doSearch(search.input.value.trim());
  } }, search.el, h("button", { type: "submit", class: "primary" }, "Search"));

  const selected = h("div", { id: "selected" });
  const amount = field("Amount tendered", { id: "vend-amount", inputmode: "decimal", autocomplete: "off", class: "amount-input", placeholder: "0.00", "aria-describedby": "vend-amount-hint" });
  amount.el.classList.add("shrink");
  const previewOut = h("div", { id: "preview", "aria-live": "polite" });
  const amountForm = h("form", { id: "amount-form", class: "card", hidden: true, onsubmit: async e => {
    e.preventDefault();
    await doPreview();
  } }, h("h2", {}, "2. Amount"), h("div", { class: "row" }, amount.el, h("button", { type: "submit", class: "primary", id: "preview-btn" }, "Preview")),
    h("p", { class: "hint", id: "vend-amount-hint" }, "Money received from the customer; the tariff works out the water and the change."), previewOut);
  amount.input.addEventListener("input", () => { st.preview = null; clear(previewOut); });

  const receiptOut = h("div", { id: "receipt-area", class: "print-area" });

  clear(main).append(
    h("h1", {}, "Vend water"),
    h("div", { class: "no-print" },
      h("section", { class: "card" }, h("h2", {}, "1. Find the customer"), searchForm, results),
      selected, amountForm),
    receiptOut);

  if (st.pending) showPending();
  const lastLink = h("p", { class: "no-print" });
  const showLast = () => {
    const last = sessionStorage.getItem(LAST);
    clear(lastLink);
    if (last) lastLink.append(h("a", { href: "#/receipts/" + last, id: "reprint-last" }, "Reprint the last receipt (#" + last + ")"));
  };
  showLast();
  main.querySelector("h1").after(lastLink);

  async function doSearch(text) {
    clear(results);
    if (!text) { results.append(h("p", { class: "hint" }, "Type a meter number, a name or an account.")); return; }
    results.append(h("p", { class: "muted" }, "Searching…"));
    try {
      const [meters, customers] = await Promise.all([
        api.get("/meters?q=" + api.q(text)),
        api.get("/customers?q=" + api.q(text)).catch(() => []),
      ]);
      const list = [...(meters || [])];
      const seen = new Set(list.map(m => m.number));
      // Customers found by phone or address whose meters the meter search missed.
      for (const c of (customers || []).slice(0, 5)) {
        if (list.some(m => m.customer === c.account)) continue;
        const d = await api.get("/customers/" + api.q(c.account)).catch(() => null);
        for (const m of d?.meters || []) if (!seen.has(m.number)) { seen.add(m.number); list.push(m); }
      }
      const names = new Map((customers || []).map(c => [c.account, c]));
      clear(results);
      if (list.length === 0) { results.append(h("p", { class: "empty" }, "No meter or customer matches “" + text + "”.")); return; }
      results.append(h("ul", { class: "results" }, list.map(m => {
        const c = names.get(m.customer);
        return h("li", {}, h("button", { type: "button", class: "pick", "data-meter": m.number, onclick: () => pick(m, c) },
          h("span", {}, h("span", { class: "pick-main mono" }, groupPAN(m.number)), " ", h("span", { class: "muted" }, m.kind.toUpperCase())),
          h("span", {}, c ? c.name + " · " : "", m.customer || "unassigned", m.area ? " · " + m.area : ""),
          m.status && m.status !== "active" ? h("span", { class: "badge warn" }, m.status) : null));
      })));
      if (list.length === 1) results.querySelector("button").focus();
    } catch (e) {
      clear(results).append(errorBox(e));
    }
  }

  async function pick(m, c) {
    if (st.pending) { toast("Settle the purchase in progress first."); return; }
    st.meter = m;
    st.customer = c || null;
    if (!c && m.customer) {
      const d = await api.get("/customers/" + api.q(m.customer)).catch(() => null);
      st.customer = d?.customer || null;
    }
    st.preview = null;
    clear(previewOut);
    clear(selected).append(h("section", { class: "card selected-meter", "aria-label": "Selected meter" },
      h("dl", { class: "facts" },
        h("dt", {}, "Meter"), h("dd", { class: "mono", id: "sel-meter" }, groupPAN(m.number), " (", m.kind.toUpperCase(), ")"),
        h("dt", {}, "Customer"), h("dd", {}, st.customer ? st.customer.name + " — " + st.customer.account : (m.customer || "not assigned")),
        st.customer?.debt_cents ? [h("dt", {}, "Arrears"), h("dd", {}, money(st.customer.debt_cents))] : null,
        h("dt", {}, "Tariff"), h("dd", {}, m.tariff),
        m.kind === "sts" ? [h("dt", {}, "Key"), h("dd", {}, "SGC " + (m.supply_group || "—") + ", KRN " + m.krn + ", TI " + m.ti + ", base " + m.base_date)] : null),
      h("p", {}, h("a", { href: "#/meters/" + encodeURIComponent(m.number) }, "Open the meter page"))));
    amountForm.hidden = false;
    amount.input.focus();
  }

  async function doPreview() {
    clear(previewOut);
    amount.input.removeAttribute("aria-invalid");
    const cents = parseCents(amount.input.value);
    if (!cents) {
      amount.input.setAttribute("aria-invalid", "true");
      previewOut.append(errorBox(new Error("Enter the amount tendered, for example 150 or 150.50.")));
      amount.input.focus();
      return;
    }
    try {
      const p = await api.post("/purchases/preview", { meter: st.meter.number, amount_cents: cents });
      st.preview = { cents, p };
      previewOut.append(breakdownView(p.breakdown, { keyChangeDue: p.key_change_due, meterKind: p.meter_kind }),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "primary", id: "pay-btn", onclick: () => issue(st.meter.number, cents) }, "Confirm payment of " + money(cents, p.breakdown?.currency) + " and issue"),
          h("button", { type: "button", onclick: () => { clear(previewOut); amount.input.focus(); } }, "Change amount")));
      previewOut.querySelector("#pay-btn").focus();
    } catch (e) {
      if (e.field === "amount_cents") amount.input.setAttribute("aria-invalid", "true");
      previewOut.append(errorBox(e));
    }
  }

  async function issue(meter, cents) {
    // The key is made once per purchase and kept until the sale is settled.
    if (!st.pending || st.pending.meter !== meter || st.pending.amount_cents !== cents) {
      st.pending = { key: crypto.randomUUID(), meter, amount_cents: cents, attempts: 0 };
    }
    st.pending.attempts++;
    savePending(st.pending);
    const buttons = main.querySelectorAll("#pay-btn, #retry-btn");
    buttons.forEach(b => { b.disabled = true; });
    try {
      const r = await api.post("/purchases", { meter, amount_cents: cents }, { "Idempotency-Key": st.pending.key });
      st.pending = null;
      savePending(null);
      sessionStorage.setItem(LAST, String(r.purchase_id));
      showLast();
      showReceipt(r);
    } catch (e) {
      buttons.forEach(b => { b.disabled = false; });
      const unsure = e instanceof api.NetworkError || e.status >= 500 || e.code === "conflict" || e.code === "unavailable";
      if (unsure) { showPending(e); return; }
      // The head-end refused the sale outright: nothing was sold, the key
      // is spent on nothing.
      st.pending = null;
      savePending(null);
      if (amountForm.hidden) {
        // A retry from the pending panel: say so where the operator looks.
        clear(selected).append(h("section", { class: "card", role: "alert" }, h("h2", {}, "The head-end refused this purchase"), errorBox(e),
          h("p", {}, "Nothing was sold. Search the customer again to start a new sale.")));
      } else previewOut.append(errorBox(e));
    }
  }

  function showPending(err) {
    const p = st.pending;
    clear(selected).append(h("section", { class: "card pending", id: "pending", role: "alert" },
      h("h2", {}, "Purchase not confirmed"),
      err ? errorBox(err) : null,
      h("p", {}, "Meter ", h("span", { class: "mono" }, groupPAN(p.meter)), ", ", money(p.amount_cents), ". ",
        "The head-end may or may not have recorded this sale. Retry: it uses the same purchase key (",
        h("code", { id: "pending-key" }, p.key), "), so the customer cannot be charged twice and gets the same tokens."),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", id: "retry-btn", onclick: () => issue(p.meter, p.amount_cents) }, "Retry the same purchase"),
        h("button", { type: "button", class: "danger", onclick: () => {
          if (!confirm("Abandon this purchase? Only do this once you are sure the head-end did not record it (for example a supervisor checked the meter's purchases).")) return;
          st.pending = null; savePending(null); clear(selected); toast("Purchase abandoned.");
        } }, "Abandon"))));
    amountForm.hidden = true;
    selected.querySelector("#retry-btn").focus();
  }

  function showReceipt(r) {
    clear(selected);
    clear(previewOut);
    amountForm.hidden = true;
    amount.input.value = "";
    clear(receiptOut).append(receiptView(r, false), receiptActions(() => {
      clear(receiptOut);
      clear(results);
      search.input.value = "";
      search.input.focus();
    }));
    receiptOut.querySelector("#print-btn").focus();
  }
}

function receiptActions(onNew) {
  return h("div", { class: "actions no-print" },
    h("button", { type: "button", class: "primary", id: "print-btn", onclick: () => window.print() }, "Print receipt"),
    onNew ? h("button", { type: "button", id: "new-sale", onclick: onNew }, "New sale") : null);
}

// breakdownView itemises a tariff breakdown: fixed charges, blocks, VAT,
// debt recovered, free water and change.
export function breakdownView(b, opts = {}) {
  if (!b) return h("p", { class: "empty" }, "No breakdown.");
  const cur = b.currency;
  const rows = [];
  for (const f of b.fixed_charges || []) rows.push({ item: f.name + " (monthly, first purchase)", qty: "", amount: f.amount });
  if (b.debt_recovered) rows.push({ item: "Arrears recovered", qty: "", amount: b.debt_recovered });
  for (const l of b.blocks || []) rows.push({ item: "Block " + l.block + ": " + kl(l.from_litres) + "–" + kl(l.to_litres) + " kl at " + money(l.price_per_kl, cur) + "/kl", qty: litres(l.litres), amount: l.amount });
  const total = (b.tendered || 0) - (b.change || 0);
  const lines = table([
    { label: "Item", value: r => r.item },
    { label: "Water", value: r => r.qty, num: true },
    { label: "Amount", value: r => money(r.amount), num: true },
  ], rows, { class: "breakdown", empty: "Nothing to charge." });
  return h("div", { class: "breakdown-view", id: "breakdown" },
    opts.keyChangeDue ? h("p", { class: "notice", id: "key-change-due" }, "This meter needs a key change: the key-change tokens come first on the receipt and must be entered before the credit token.") : null,
    lines,
    h("dl", { class: "facts" },
      h("dt", {}, "Water bought"), h("dd", { id: "bd-litres" }, litres(b.litres)),
      b.free_litres ? [h("dt", {}, "Free basic water"), h("dd", { id: "bd-free" }, litres(b.free_litres) + " (its own token)")] : null,
      h("dt", {}, "VAT included"), h("dd", { id: "bd-vat" }, money(b.vat, cur) + " (" + (b.vat_bp / 100) + "%)"),
      h("dt", {}, "Total paid"), h("dd", { id: "bd-total" }, money(total, cur)),
      h("dt", {}, "Change"), h("dd", { id: "bd-change" }, money(b.change, cur)),
      b.debt_after ? [h("dt", {}, "Arrears remaining"), h("dd", {}, money(b.debt_after, cur))] : null));
}

const kindNames = { key_change: "Key change", free_water: "Free basic water", credit: "Water credit", engineering: "Engineering" };

// receiptView renders a receipt: tokens in the order the meter takes them
// (key change first), each 20-digit token in groups of four.
export function receiptView(r, reprint) {
  const b = r.breakdown;
  const cur = b?.currency;
  const toks = r.tokens || [];
  const keyChanges = toks.filter(t => t.kind === "key_change").length;
  return h("article", { class: "receipt", id: "receipt", "aria-label": "Receipt" },
    h("header", {},
      h("strong", {}, "Sluice prepaid water"),
      h("span", {}, r.vendor ? "Vending point " + r.vendor : ""),
      reprint ? h("div", {}, h("span", { class: "reprint-mark", id: "reprint-mark" }, "REPRINT")) : null),
    h("dl", { class: "facts" },
      h("dt", {}, "Receipt"), h("dd", { id: "r-id" }, "#" + r.purchase_id + (r.reference ? " · " + r.reference : "")),
      h("dt", {}, "Date"), h("dd", {}, when(r.time)),
      h("dt", {}, "Cashier"), h("dd", {}, r.operator || "—"),
      h("dt", {}, "Customer"), h("dd", {}, r.customer ? r.customer.name + " (" + r.customer.account + ")" : "—"),
      h("dt", {}, "Meter"), h("dd", { class: "mono", id: "r-meter" }, groupPAN(r.meter)),
      r.state && !["issued", "completed"].includes(r.state) ? [h("dt", {}, "State"), h("dd", {}, r.state)] : null),
    keyChanges ? h("p", { class: "notice", id: "key-change-note" }, "Enter the " + keyChanges + " key-change tokens first, in order, then the others.") : null,
    h("ol", { class: "tokens", id: "tokens" }, toks.map((t, i) => h("li", { class: "token kind-" + t.kind, "data-kind": t.kind },
      h("span", { class: "token-label" }, (i + 1) + ". " + (t.label || kindNames[t.kind] || t.kind)),
      t.token
        ? h("output", { class: "token-digits", "aria-label": (t.label || t.kind) + " token" }, groupToken(t.token))
        : h("span", { class: "token-digits voucher" }, "Voucher #" + t.sequence + (r.meter_kind === "card" ? " (load on card)" : " (sent to meter)")),
      h("span", { class: "token-step" }, [t.litres ? litres(t.litres) : null, t.tid ? "TID " + t.tid : null].filter(Boolean).join(" · "))))),
    b ? h("table", {}, h("tbody", {},
      (b.fixed_charges || []).map(f => h("tr", {}, h("td", {}, f.name), h("td", { class: "num" }, money(f.amount)))),
      b.debt_recovered ? h("tr", {}, h("td", {}, "Arrears recovered"), h("td", { class: "num" }, money(b.debt_recovered))) : null,
      (b.blocks || []).map(l => h("tr", {}, h("td", {}, "Block " + l.block + " · " + litres(l.litres) + " @ " + money(l.price_per_kl) + "/kl"), h("td", { class: "num" }, money(l.amount)))),
      h("tr", {}, h("td", {}, "VAT included (" + (b.vat_bp / 100) + "%)"), h("td", { class: "num" }, money(b.vat))),
      b.free_litres ? h("tr", {}, h("td", {}, "Free basic water " + litres(b.free_litres)), h("td", { class: "num" }, money(0))) : null,
      h("tr", { class: "total" }, h("td", {}, "Tendered"), h("td", { class: "num" }, money(r.tendered_cents, cur))),
      h("tr", {}, h("td", {}, "Paid"), h("td", { class: "num" }, money(r.paid_cents, cur))),
      h("tr", {}, h("td", {}, "Change"), h("td", { class: "num" }, money(r.change_cents, cur))),
      b.debt_after ? h("tr", {}, h("td", {}, "Arrears remaining"), h("td", { class: "num" }, money(b.debt_after, cur))) : null)) : null,
    h("footer", {}, "Water bought: " + litres(r.litres) + (r.free_litres ? " + " + litres(r.free_litres) + " free" : ""), h("br"),
      "Keep this receipt. Tokens can be reprinted, never refunded once entered."));
}

export async function receiptPage(ctx) {
  const { main, params } = ctx;
  const id = params[0];
  const idField = field("Receipt number (purchase ID)", { id: "receipt-id", inputmode: "numeric", value: id || "", autofocus: !id });
  const out = h("div", { class: "print-area", id: "receipt-area" });
  clear(main).append(h("h1", { class: "no-print" }, "Reprint a receipt"),
    h("form", { class: "row card no-print", onsubmit: e => {
      e.preventDefault();
      const v = idField.input.value.trim().replace(/^#/, "");
      if (/^\d+$/.test(v)) ctx.go("receipts/" + v);
    } }, idField.el, h("button", { type: "submit", class: "primary" }, "Show")),
    out);
  if (!id) return;
  out.append(h("p", { class: "muted" }, "Loading…"));
  try {
    const r = await api.get("/purchases/" + api.q(id));
    clear(out).append(receiptView(r, true), receiptActions(null));
    if (api.can(ctx.role, "POST", "/purchases/{id}/reverse") && !/revers|compensat/.test(r.state || "")) out.append(reverseForm(r, () => receiptPage(ctx)));
  } catch (e) {
    clear(out).append(errorBox(e));
  }
}

// reverseForm undoes a purchase (supervisors). The head-end reverses it
// outright only when no credit can have reached the meter; otherwise the
// supervisor may post a compensating entry, which returns the money to the
// float and makes the water's value the customer's debt.
function reverseForm(r, done) {
  const reason = field("Reason", { id: "reverse-reason", required: true, autocomplete: "off" });
  const compensate = h("input", { type: "checkbox", id: "reverse-compensate" });
  const out = h("div", { "aria-live": "polite" });
  return h("section", { class: "card no-print", id: "reverse" }, h("h2", {}, "Reverse this purchase"),
    h("form", { class: "stack", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      if (!reason.input.value.trim()) { reason.input.setAttribute("aria-invalid", "true"); reason.input.focus(); return; }
      if (!confirm("Reverse purchase #" + r.purchase_id + "?")) return;
      try {
        const x = await api.post("/purchases/" + r.purchase_id + "/reverse", { reason: reason.input.value.trim(), compensate: compensate.checked || undefined });
        toast(x.mode === "compensated" ? "Compensating entry posted: " + money(x.refunded_cents) + " back to the float, " + money(x.debt_raised_cents) + " to the customer's debt." : "Purchase reversed: " + money(x.refunded_cents) + " back to the float.");
        done();
      } catch (err) {
        out.append(errorBox(err.code === "not_reversible" ? new Error(err.message + " Tick the compensating entry to post one instead.") : err));
      }
    } }, reason.el,
    h("div", { class: "row" }, h("label", { for: "reverse-compensate" }, compensate, " Post a compensating entry if the credit may have reached the meter")),
    h("p", { class: "hint" }, "A token once printed may already be in the meter, so the head-end reverses outright only what cannot have reached it."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Reverse")), out));
}
