// Registry and money: vending points and their floats (deposits, limits),
// customers and meters (open an account, register and assign a meter).
import { h, clear, field, errorBox, table, badge, money, parseCents, toast, groupPAN } from "./dom.js";
import * as api from "./api.js";

export async function vendorsPage(ctx) {
  const { main, role } = ctx;
  const list = h("section", { class: "card", id: "vendors" }, h("h2", {}, "Vending points"));
  clear(main).append(h("h1", {}, "Vending points and floats"));
  if (api.can(role, "POST", "/vendors")) main.append(newVendorForm());
  main.append(list);
  if (api.can(role, "POST", "/vendors/{code}/deposits")) main.append(depositForm());
  await load();

  async function load() {
    clear(list).append(h("h2", {}, "Vending points"));
    try {
      const vs = await api.get("/vendors");
      list.append(table([
        { label: "Code", value: v => h("strong", {}, v.code) },
        { label: "Name", value: v => v.name },
        { label: "Float", value: v => money(v.float_cents), num: true },
        { label: "Sold today", value: v => money(v.sold_today_cents), num: true },
        { label: "Daily limit", value: v => api.can(role, "PATCH", "/vendors/{code}") ? limitCell(v) : money(v.daily_limit_cents), num: true },
        { label: "State", value: v => api.can(role, "PATCH", "/vendors/{code}")
          ? h("button", { type: "button", class: v.disabled ? "" : "danger", onclick: () => change(v, { disabled: !v.disabled }) }, v.disabled ? "Enable" : "Disable")
          : badge(v.disabled ? "disabled" : "active", v.disabled ? "bad" : "ok") },
      ], vs, { empty: "No vending points yet.", class: "vendors" }));
    } catch (e) { list.append(errorBox(e)); }
  }

  function limitCell(v) {
    const input = h("input", { value: (v.daily_limit_cents / 100).toFixed(2), inputmode: "decimal", "aria-label": "Daily limit of " + v.code, class: "limit-input" });
    return h("form", { class: "role-cell", onsubmit: e => {
      e.preventDefault();
      const c = parseCents(input.value);
      if (!c) { input.setAttribute("aria-invalid", "true"); input.focus(); return; }
      change(v, { daily_limit_cents: c });
    } }, input, h("button", { type: "submit" }, "Set"));
  }

  async function change(v, body) {
    try { await api.patch("/vendors/" + api.q(v.code), body); toast("Vending point " + v.code + " updated."); } catch (e) { toast(e.message); }
    load();
  }

  function newVendorForm() {
    const code = field("Code", { id: "vendor-code", required: true, autocomplete: "off" });
    const name = field("Name", { id: "vendor-name", required: true, autocomplete: "off" });
    const limit = field("Daily limit", { id: "vendor-limit", required: true, inputmode: "decimal", autocomplete: "off" });
    const out = h("div", { "aria-live": "polite" });
    return h("section", { class: "card" }, h("h2", {}, "Open a vending point"), h("form", { id: "vendor-form", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      const c = parseCents(limit.input.value);
      if (!c) { out.append(errorBox(new Error("Enter the daily limit, for example 50000."))); limit.input.focus(); return; }
      try {
        await api.post("/vendors", { code: code.input.value.trim(), name: name.input.value.trim(), daily_limit_cents: c });
        toast("Vending point opened with an empty float.");
        e.target.reset();
        load();
      } catch (err) { out.append(errorBox(err)); ({ code, name, daily_limit_cents: limit }[err.field])?.input.focus(); }
    } }, h("div", { class: "row" }, code.el, name.el, limit.el, h("button", { type: "submit", class: "primary" }, "Open")), out));
  }

  function depositForm() {
    const code = field("Vending point", { id: "deposit-vendor", required: true, autocomplete: "off" });
    const amount = field("Amount", { id: "deposit-amount", required: true, inputmode: "decimal", autocomplete: "off" });
    const bank = field("Bank (optional)", { id: "deposit-bank", autocomplete: "off" });
    const ref = field("Deposit slip reference", { id: "deposit-ref", required: true, autocomplete: "off" });
    const out = h("div", { "aria-live": "polite" });
    return h("section", { class: "card" }, h("h2", {}, "Record a float deposit"), h("form", { id: "deposit-form", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      const c = parseCents(amount.input.value);
      if (!c) { out.append(errorBox(new Error("Enter the amount deposited."))); amount.input.focus(); return; }
      try {
        const v = await api.post("/vendors/" + api.q(code.input.value.trim()) + "/deposits", { amount_cents: c, bank: bank.input.value.trim() || undefined, reference: ref.input.value.trim() });
        out.append(h("p", { class: "success", role: "status" }, "Deposit recorded: " + v.code + " float is now " + money(v.float_cents) + "."));
        e.target.reset();
        load();
      } catch (err) { out.append(errorBox(err)); }
    } }, h("div", { class: "row" }, code.el, amount.el, bank.el, ref.el, h("button", { type: "submit", class: "primary" }, "Record")), out));
  }
}

// registryForms are the management forms of the meters page: open a
// customer account, register a meter.
export async function registryForms(role) {
  const box = h("div", { class: "cols" });
  if (api.can(role, "POST", "/customers")) {
    const account = field("Account", { id: "cust-account", required: true, autocomplete: "off" });
    const name = field("Name", { id: "cust-name", required: true, autocomplete: "off" });
    const address = field("Address", { id: "cust-address", autocomplete: "off" });
    const phone = field("Phone", { id: "cust-phone", type: "tel", autocomplete: "off" });
    const area = field("Area", { id: "cust-area", autocomplete: "off" });
    const out = h("div", { "aria-live": "polite" });
    box.append(h("section", { class: "card" }, h("h2", {}, "Open a customer account"), h("form", { id: "customer-form", class: "stack", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      try {
        const c = await api.post("/customers", { account: account.input.value.trim(), name: name.input.value.trim(), address: address.input.value.trim() || undefined, phone: phone.input.value.trim() || undefined, area: area.input.value.trim() || undefined });
        out.append(h("p", { class: "success", role: "status" }, "Account ", h("a", { href: "#/customers/" + encodeURIComponent(c.account) }, c.account), " opened."));
        e.target.reset();
      } catch (err) { out.append(errorBox(err)); ({ account, name, address, phone, area }[err.field])?.input.focus(); }
    } }, account.el, name.el, address.el, phone.el, area.el, h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Open account")), out)));
  }
  if (api.can(role, "POST", "/meters")) {
    const [tariffs, groups] = await Promise.all([
      api.can(role, "GET", "/tariffs") ? api.get("/tariffs").catch(() => []) : [],
      api.can(role, "GET", "/supply-groups") ? api.get("/supply-groups").catch(() => []) : [],
    ]);
    const number = field("Meter number", { id: "meter-number", required: true, autocomplete: "off", inputmode: "numeric" }, "STS: the 18-digit number on the meter");
    const kind = field("Kind", { tag: "select", id: "meter-kind", options: [{ value: "sts", label: "STS keypad" }, { value: "card", label: "Card" }, { value: "ami", label: "AMI (networked)" }] });
    const customer = field("Customer account (optional)", { id: "meter-customer", autocomplete: "off" });
    const tariff = field("Tariff", { tag: "select", id: "meter-tariff", options: tariffs.map(t => ({ value: t.code, label: t.code + (t.name ? " " + t.name : "") })) });
    const group = field("Supply group", { tag: "select", id: "meter-group", options: groups.map(g => ({ value: g.code, label: g.code + " " + g.name })) });
    const area = field("Area", { id: "meter-area", autocomplete: "off" });
    const out = h("div", { "aria-live": "polite" });
    kind.input.addEventListener("change", () => { group.el.hidden = kind.input.value !== "sts"; });
    box.append(h("section", { class: "card" }, h("h2", {}, "Register a meter"), h("form", { id: "meter-form", class: "stack", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      const body = { number: number.input.value.replace(/\s/g, ""), kind: kind.input.value, tariff: tariff.input.value, customer: customer.input.value.trim() || undefined, area: area.input.value.trim() || undefined };
      if (body.kind === "sts") body.supply_group = group.input.value;
      try {
        const m = await api.post("/meters", body);
        out.append(h("p", { class: "success", role: "status" }, "Meter ", h("a", { href: "#/meters/" + encodeURIComponent(m.number), class: "mono" }, groupPAN(m.number)), " registered."));
        e.target.reset();
      } catch (err) { out.append(errorBox(err)); ({ number, kind, customer, tariff, supply_group: group, area }[err.field])?.input.focus(); }
    } }, number.el, kind.el, customer.el, tariff.el, group.el, area.el, h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Register")), out)));
  }
  return box.childElementCount ? box : null;
}

// tariffsPage shows the tariffs as customers are charged: rising blocks per
// month, free basic water, fixed charges, VAT and debt recovery, per
// version; and the STS supply groups with their key revision.
export async function tariffsPage(ctx) {
  const { main, role } = ctx;
  const tariffs = await api.get("/tariffs");
  clear(main).append(h("h1", {}, "Tariffs and supply groups"));
  if (!tariffs.length) main.append(h("p", { class: "empty" }, "No tariffs yet."));
  for (const t of tariffs) {
    const cur = t.currency || "";
    const sec = h("section", { class: "card tariff", "data-tariff": t.code }, h("h2", {}, t.code + (t.name ? " — " + t.name : "")));
    for (const v of t.versions || []) {
      let from = 0;
      sec.append(h("h3", {}, "From " + v.effective),
        h("dl", { class: "facts" },
          h("dt", {}, "VAT"), h("dd", {}, (v.vat_bp || 0) / 100 + "%"),
          h("dt", {}, "Debt recovery"), h("dd", {}, (v.debt_recovery_bp || 0) / 100 + "% of each purchase"),
          h("dt", {}, "Free basic water"), h("dd", {}, v.free_basic_kl ? v.free_basic_kl + " kl a month, its own token" : "none"),
          (v.fixed_charges || []).length ? [h("dt", {}, "Fixed charges"), h("dd", {}, v.fixed_charges.map(f => f.name + " " + money(f.amount, cur)).join(", ") + " a month, with the first purchase")] : null),
        table([
          { label: "Block (per month)", value: b => { const r = b.up_to_kl == null ? "over " + from + " kl" : from + "–" + b.up_to_kl + " kl"; from = b.up_to_kl ?? from; return r; } },
          { label: "Price per kl", value: b => money(b.price_per_kl, cur), num: true },
        ], v.blocks || [], { empty: "No blocks." }));
    }
    main.append(sec);
  }
  if (api.can(role, "GET", "/supply-groups")) {
    const groups = await api.get("/supply-groups").catch(() => []);
    main.append(h("section", { class: "card", id: "supply-groups" }, h("h2", {}, "STS supply groups"), table([
      { label: "Code", value: g => h("strong", {}, g.code) },
      { label: "Name", value: g => g.name },
      { label: "Key revision", value: g => String(g.krn), num: true },
      { label: "Tariff index", value: g => String(g.ti), num: true },
      { label: "Base date", value: g => String(g.base_date), num: true },
      { label: "Key derivation", value: g => "DKGA" + g.dkga + ", EA" + g.ea },
    ], groups, { empty: "No supply groups." })));
  }
}
