// Administration: operators and their roles, API keys, and the audit log.
import { h, clear, field, errorBox, table, badge, when, toast } from "./dom.js";
import * as api from "./api.js";

const ROLES = [
  { value: "vendor", label: "Vendor (cashier)" },
  { value: "supervisor", label: "Supervisor" },
  { value: "engineer", label: "Engineer" },
  { value: "auditor", label: "Auditor" },
  { value: "admin", label: "Administrator" },
];

export async function operatorsPage(ctx) {
  const { main, role, me } = ctx;
  const admin = api.can(role, "POST", "/operators");
  const list = h("section", { class: "card", id: "operators" }, h("h2", {}, "Operators"));
  const keys = h("section", { class: "card", id: "api-keys" }, h("h2", {}, "API keys (vending terminals and channels)"));
  let vendors = [];
  if (api.can(role, "GET", "/vendors")) vendors = await api.get("/vendors").catch(() => []);
  clear(main).append(h("h1", {}, "Operators and roles"));
  if (admin) main.append(createForm());
  main.append(list);
  if (api.can(role, "GET", "/api-keys")) main.append(keys);

  await refresh();

  async function refresh() {
    clear(list).append(h("h2", {}, "Operators"));
    try {
      const ops = await api.get("/operators");
      list.append(table([
        { label: "Username", value: o => h("strong", {}, o.username) },
        { label: "Name", value: o => o.display_name },
        { label: "Role", value: o => admin && o.username !== me.operator.username ? roleSelect(o) : o.role },
        { label: "Vending point", value: o => o.vendor || "—" },
        { label: "State", value: o => [o.disabled ? badge("disabled", "bad") : badge("active", "ok"), o.must_change_password ? [" ", badge("one-time password", "warn")] : null] },
        { label: "", value: o => admin && o.username !== me.operator.username ? h("button", { type: "button", class: o.disabled ? "" : "danger", onclick: () => change(o, { disabled: !o.disabled }) }, o.disabled ? "Enable" : "Disable") : null },
      ], ops));
    } catch (e) { list.append(errorBox(e)); }
    if (!keys.isConnected) return;
    if (!keys.querySelector("#api-keys-list")) {
      clear(keys).append(h("h2", {}, "API keys (vending terminals and channels)"));
      if (api.can(role, "POST", "/api-keys")) keys.append(keyForm());
      keys.append(h("div", { id: "api-keys-list" }));
    }
    const keyList = clear(keys.querySelector("#api-keys-list"));
    try {
      const ks = await api.get("/api-keys");
      keyList.append(table([
        { label: "Prefix", value: k => k.prefix, mono: true },
        { label: "Operator", value: k => k.operator },
        { label: "Label", value: k => k.label },
        { label: "Created", value: k => when(k.created_at) },
        { label: "State", value: k => k.revoked_at ? badge("revoked " + when(k.revoked_at), "bad") : badge("active", "ok") },
        { label: "", value: k => admin && !k.revoked_at ? h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm("Revoke API key " + k.prefix + "…? Terminals using it stop working at once.")) return;
          try { await api.del("/api-keys/" + k.id); toast("Key revoked."); refresh(); } catch (e) { toast(e.message); }
        } }, "Revoke") : null },
      ], ks, { empty: "No API keys." }));
    } catch (e) { keyList.append(errorBox(e)); }
  }

  // roleSelect changes a role only when the administrator presses Apply:
  // a select that acted on every change would fire on each arrow key.
  function roleSelect(o) {
    const sel = h("select", { "aria-label": "Role of " + o.username }, ROLES.map(r => h("option", { value: r.value, selected: r.value === o.role || undefined }, r.label)));
    const apply = h("button", { type: "button", disabled: true, onclick: () => {
      const body = { role: sel.value };
      if (sel.value === "vendor" && !o.vendor) {
        const v = prompt("Vending point code for this cashier:", vendors[0]?.code || "");
        if (!v) { sel.value = o.role; apply.disabled = true; return; }
        body.vendor = v;
      }
      change(o, body);
    } }, "Apply");
    sel.addEventListener("change", () => { apply.disabled = sel.value === o.role; });
    return h("div", { class: "role-cell" }, sel, apply);
  }

  async function change(o, body) {
    try {
      await api.patch("/operators/" + api.q(o.username), body);
      toast("Operator " + o.username + " updated.");
    } catch (e) { toast(e.message); }
    refresh();
  }

  // keyForm issues an API key for a terminal; the key is shown once.
  function keyForm() {
    const op = field("Operator", { id: "key-operator", required: true, autocomplete: "off" }, "the terminal acts as this operator, with its role");
    const label = field("Label", { id: "key-label", required: true, autocomplete: "off" }, "where the terminal is, e.g. OFFICE1 till 2");
    const out = h("div", { "aria-live": "polite" });
    return h("form", { id: "key-form", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      try {
        const r = await api.post("/api-keys", { operator: op.input.value.trim(), label: label.input.value.trim() });
        out.append(h("div", { class: "success", role: "alert" }, "Key issued for ", h("strong", {}, r.api_key.operator), " (shown once; put it in the terminal now): ",
          h("code", { class: "mono", id: "new-api-key" }, r.key)));
        e.target.reset();
        refresh();
      } catch (err) { out.append(errorBox(err)); }
    } }, h("div", { class: "row start" }, op.el, label.el), h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Issue key")), out);
  }

  function createForm() {
    const user = field("Username", { required: true, autocomplete: "off", pattern: "[a-z0-9._\\-]+", id: "new-username" }, "Lower case letters, digits, . _ -");
    const name = field("Display name", { required: true, autocomplete: "off", id: "new-display" });
    const r = field("Role", { tag: "select", options: ROLES, id: "new-role" });
    const vend = field("Vending point (cashiers)", { tag: "select", id: "new-vendor", options: [{ value: "", label: "—" }, ...vendors.map(v => ({ value: v.code, label: v.code + " " + v.name }))] });
    const out = h("div", { "aria-live": "polite" });
    return h("section", { class: "card" }, h("h2", {}, "New operator"),
      h("form", { id: "operator-form", onsubmit: async e => {
        e.preventDefault();
        clear(out);
        try {
          const res = await api.post("/operators", { username: user.input.value.trim(), display_name: name.input.value.trim(), role: r.input.value, vendor: vend.input.value || undefined });
          out.append(h("div", { class: "success", role: "alert" }, "Operator ", h("strong", {}, res.operator.username), " created. One-time password (shown once; hand it over in person): ",
            h("code", { class: "mono", id: "one-time-password" }, res.one_time_password)));
          e.target.reset();
          refresh();
        } catch (err) { out.append(errorBox(err)); }
      } }, h("div", { class: "row start" }, user.el, name.el, r.el, vend.el), h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create operator"))), out);
  }
}

export async function auditPage(ctx) {
  const { main, role } = ctx;
  const verify = api.find("GET", /^\/audit\/(verify|verification|status)$/) || api.find("POST", /^\/audit\/verify$/);
  const status = h("section", { class: "card", id: "audit-status" }, h("h2", {}, "Chain verification"));
  const list = h("section", { class: "card", id: "audit-records" });
  const from = field("From sequence number", { id: "audit-from", inputmode: "numeric", value: "1" });
  clear(main).append(h("h1", {}, "Audit log"), status,
    h("form", { class: "row card", onsubmit: e => { e.preventDefault(); load(Number(from.input.value) || 1); } }, from.el, h("button", { type: "submit", class: "primary" }, "Show")),
    list);

  if (verify) {
    const method = api.has("GET", verify) ? "GET" : "POST";
    const btn = h("button", { type: "button", class: "primary", id: "verify-btn", onclick: () => runVerify() }, "Verify the chain now");
    const out = h("div", { id: "verify-result", "aria-live": "polite" });
    status.append(out, btn);
    async function runVerify() {
      clear(out).append(h("p", { class: "muted" }, "Verifying…"));
      try {
        const r = await api.call(method, verify);
        const ok = r.ok ?? r.valid ?? r.verified ?? (r.status === "ok");
        clear(out).append(h("p", { class: ok ? "success" : "error", role: "status" },
          ok ? "The chain verifies" : "The chain does NOT verify", r.records != null ? " (" + r.records + " records)" : "", r.first_bad != null ? ": first bad record " + r.first_bad : "", r.reason ? ": " + r.reason : "", r.message ? ": " + r.message : ""));
      } catch (e) { clear(out).append(errorBox(e)); }
    }
    if (api.can(role, method, verify)) runVerify(); else btn.disabled = true;
  } else {
    status.append(h("p", {}, "Each record carries the hash of the one before it; the head-end seals them in order. This head-end does not offer verification over the API yet: run ",
      h("code", {}, "sluice audit verify"), " on the server to check the whole chain."));
  }
  await load(1);

  async function load(start) {
    clear(list).append(h("h2", {}, "Records from #" + start));
    try {
      const rows = await api.get("/audit?from=" + start + "&limit=100");
      list.append(table([
        { label: "#", value: r => String(r.seq), num: true },
        { label: "When", value: r => when(r.at), nowrap: true },
        { label: "Actor", value: r => r.actor },
        { label: "Action", value: r => r.action },
        { label: "Object", value: r => r.object },
        { label: "Details", value: r => (r.details || "").length <= 90 ? h("code", { class: "details" }, r.details)
          : h("details", { class: "more" }, h("summary", {}, h("code", { class: "details" }, r.details.slice(0, 80) + "…")), h("code", { class: "details" }, r.details)) },
        { label: "Hash", value: r => h("span", { title: r.hash }, (r.hash || "").slice(0, 12) + "…"), mono: true },
      ], rows, { class: "audit", empty: "No sealed records from here (records are sealed into the chain a moment after they happen)." }));
      if (rows.length === 100) list.append(h("button", { type: "button", onclick: () => { from.input.value = rows[99].seq + 1; load(rows[99].seq + 1); } }, "Next 100"));
    } catch (e) { list.append(errorBox(e)); }
  }
}

// webhooksPage administers outbound webhooks: subscribers (the signing
// secret is shown once), the dead-letter list with retry, and the outbox.
export async function webhooksPage(ctx) {
  const { main, role } = ctx;
  const admin = api.can(role, "POST", "/webhooks/subscribers");
  const subs = h("section", { class: "card", id: "webhook-subscribers" });
  const msgs = h("section", { class: "card", id: "webhook-messages" });
  clear(main).append(h("h1", {}, "Webhooks"),
    h("p", { class: "muted" }, "Sluice signs each event it sends (HMAC-SHA256 over the timestamp and body) and retries with back-off; what fails every attempt waits in the dead-letter list."));
  if (admin) main.append(subscriberForm());
  main.append(subs, msgs);
  await Promise.all([loadSubs(), loadMsgs("dead")]);

  async function loadSubs() {
    clear(subs).append(h("h2", {}, "Subscribers"));
    try {
      const rows = await api.get("/webhooks/subscribers");
      subs.append(table([
        { label: "Name", value: s => h("strong", {}, s.name) },
        { label: "URL", value: s => h("code", { class: "details" }, s.url) },
        { label: "Events", value: s => (s.events || []).join(", ") },
        { label: "Since", value: s => when(s.created_at), nowrap: true },
        { label: "State", value: s => admin
          ? h("button", { type: "button", class: s.disabled ? "" : "danger", onclick: async () => {
            try { await api.post("/webhooks/subscribers/" + s.id + (s.disabled ? "/enable" : "/disable")); toast(s.name + (s.disabled ? " enabled." : " disabled.")); loadSubs(); } catch (e) { toast(e.message); }
          } }, s.disabled ? "Enable" : "Disable")
          : badge(s.disabled ? "disabled" : "active", s.disabled ? "bad" : "ok") },
      ], rows, { empty: "No subscribers." }));
    } catch (e) { subs.append(errorBox(e)); }
  }

  async function loadMsgs(state) {
    const sel = field("Messages", { tag: "select", id: "webhook-state", value: state, options: [
      ...(api.can(role, "GET", "/webhooks/dead-letters") ? [{ value: "dead", label: "Dead letters" }] : []),
      { value: "pending", label: "Pending" }, { value: "delivered", label: "Delivered" }] });
    clear(msgs).append(h("h2", {}, "Outbox"), h("form", { class: "row", onsubmit: e => { e.preventDefault(); loadMsgs(sel.input.value); } }, sel.el, h("button", { type: "submit", class: "primary" }, "Show")));
    try {
      const rows = state === "dead" && api.can(role, "GET", "/webhooks/dead-letters") ? await api.get("/webhooks/dead-letters") : await api.get("/webhooks/messages?q=" + api.q(state));
      msgs.append(table([
        { label: "#", value: m => String(m.id), num: true },
        { label: "Event", value: m => m.event_type },
        { label: "Subscriber", value: m => String(m.subscriber_id), num: true },
        { label: "Attempts", value: m => String(m.attempts), num: true },
        { label: "Created", value: m => when(m.created_at), nowrap: true },
        { label: "Last error", value: m => m.last_error || "—" },
        { label: "", value: m => m.state === "dead" && api.can(role, "POST", "/webhooks/dead-letters/{id}/retry") ? h("button", { type: "button", onclick: async () => {
          try { await api.post("/webhooks/dead-letters/" + m.id + "/retry"); toast("Message queued again."); loadMsgs(state); } catch (e) { toast(e.message); }
        } }, "Retry") : "" },
      ], rows, { empty: "No messages in this state." }));
    } catch (e) { msgs.append(errorBox(e)); }
  }

  function subscriberForm() {
    const name = field("Name", { id: "hook-name", required: true, autocomplete: "off" });
    const url = field("URL", { id: "hook-url", type: "url", required: true, autocomplete: "off" }, "the receiving system's HTTPS endpoint");
    const events = field("Events", { id: "hook-events", required: true, autocomplete: "off", value: "purchase.completed" }, "comma-separated: purchase.completed, token.reprinted, alert.raised, campaign.finished");
    const out = h("div", { "aria-live": "polite" });
    return h("section", { class: "card" }, h("h2", {}, "Subscribe an endpoint"), h("form", { id: "hook-form", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      try {
        const r = await api.post("/webhooks/subscribers", { name: name.input.value.trim(), url: url.input.value.trim(), events: events.input.value.split(/[\s,]+/).filter(Boolean) });
        out.append(h("div", { class: "success", role: "alert" }, "Subscribed ", h("strong", {}, r.subscriber.name), ". Signing secret (shown once; give it to the receiver): ", h("code", { class: "mono", id: "hook-secret" }, r.secret)));
        e.target.reset();
        loadSubs();
      } catch (err) { out.append(errorBox(err)); ({ name, url, events }[err.field])?.input.focus(); }
    } }, h("div", { class: "row start" }, name.el, url.el, events.el), h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Subscribe")), out));
  }
}
