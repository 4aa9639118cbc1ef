// Revenue protection and field operations: alerts and key-change
// campaigns. Their API routes come with the telemetry and campaign
// releases; until a head-end has them these pages say so.
import { h, clear, field, errorBox, table, badge, when, toast, groupPAN, groupToken } from "./dom.js";
import * as api from "./api.js";
import { progressLine } from "./dashboard.js";

function items(r) { return Array.isArray(r) ? r : r?.items || r?.alerts || r?.campaigns || r?.meters || []; }

// alertMeter is the meter an alert is about ("meter:<number>" subjects).
export function alertMeter(a) {
  if (a.meter) return a.meter;
  const m = /^meter:(.+)$/.exec(a.subject || "");
  return m ? m[1] : null;
}

export async function alertsPage(ctx) {
  const { main, role } = ctx;
  const list = api.find("GET", /^\/alerts$/);
  const ack = api.find("POST", /^\/alerts\/\{[a-z_]+\}\/(ack|acknowledge)$/);
  const resolve = api.find("POST", /^\/alerts\/\{[a-z_]+\}\/resolve$/);
  const stateSel = field("Show", { tag: "select", id: "alert-state", options: [{ value: "unresolved", label: "Unresolved (open and acknowledged)" }, { value: "open", label: "Open" }, { value: "acknowledged", label: "Acknowledged" }, { value: "resolved", label: "Resolved" }, { value: "", label: "All" }] });
  const out = h("section", { class: "card", id: "alerts" });
  clear(main).append(h("h1", {}, "Alerts"),
    h("form", { class: "row card", onsubmit: e => { e.preventDefault(); load(); } }, stateSel.el, h("button", { type: "submit", class: "primary" }, "Show")),
    out);
  await load();

  async function load() {
    clear(out);
    try {
      const st = stateSel.input.value;
      const states = st === "unresolved" ? ["open", "acknowledged"] : [st];
      const pages = await Promise.all(states.map(x => api.get(list + "?limit=500" + (x ? "&state=" + api.q(x) : ""))));
      const rows = pages.flatMap(items).sort((a, b) => String(b.last_at).localeCompare(String(a.last_at)));
      out.append(table([
        { label: "Last seen", value: a => when(a.last_at || a.raised_at || a.created_at || a.first_at), nowrap: true },
        { label: "Rule", value: a => (a.rule || a.kind || "").replace(/_/g, " ") },
        { label: "Severity", value: a => a.severity ? badge(a.severity, a.severity === "critical" ? "bad" : a.severity === "warning" ? "warn" : "") : "—" },
        { label: "Subject", value: a => alertMeter(a) ? h("a", { href: "#/meters/" + encodeURIComponent(alertMeter(a)), class: "mono" }, groupPAN(alertMeter(a))) : (a.subject || "—") },
        { label: "Summary", value: a => [a.summary || a.message || a.detail || "", a.count > 1 ? h("span", { class: "muted" }, " (×" + a.count + ")") : ""] },
        { label: "State", value: a => [badge(a.state || "open", a.state === "resolved" ? "ok" : a.state === "acknowledged" ? "warn" : "bad"),
          (a.acknowledged_by || a.acked_by) ? h("div", { class: "hint" }, "acknowledged by " + (a.acknowledged_by || a.acked_by)) : "",
          a.resolved_by ? h("div", { class: "hint" }, "resolved by " + a.resolved_by) : "", a.note ? h("div", { class: "hint" }, "note: " + a.note) : ""] },
        { label: "Actions", value: a => actions(a) },
      ], rows, { empty: "No alerts in this state.", rowClass: a => "state-" + (a.state || "open") }));
    } catch (e) { out.append(errorBox(e)); }
  }

  function actions(a) {
    const id = a.id;
    const box = h("div", { class: "actions" });
    if (ack && api.can(role, "POST", ack) && (a.state || "open") === "open") {
      box.append(h("button", { type: "button", "data-ack": id, onclick: async () => {
        try { await api.post(api.fill(ack, { id })); toast("Alert acknowledged."); load(); } catch (e) { toast(e.message); }
      } }, "Acknowledge"));
    }
    if (resolve && api.can(role, "POST", resolve) && a.state !== "resolved") {
      const note = field("Resolution note", { tag: "textarea", required: true, rows: 2, id: "resolve-note-" + id });
      const form = h("form", { hidden: true, class: "resolve-form", "data-alert": id, onsubmit: async e => {
        e.preventDefault();
        if (!note.input.value.trim()) { note.input.setAttribute("aria-invalid", "true"); note.input.focus(); return; }
        try { await api.post(api.fill(resolve, { id }), { note: note.input.value.trim() }); toast("Alert resolved."); load(); } catch (err) { toast(err.message); note.input.focus(); }
      } }, note.el, h("button", { type: "submit", class: "primary" }, "Resolve"));
      box.append(h("button", { type: "button", "data-resolve": id, onclick: () => { form.hidden = false; note.input.focus(); } }, "Resolve…"), form);
    }
    return box;
  }
}

const CAMPAIGN_STATES = ["pending", "issued", "delivered", "confirmed", "failed"];

function stateBadge(st) {
  return badge(st, st === "confirmed" ? "ok" : st === "failed" ? "bad" : st === "pending" ? "" : "warn");
}

export async function campaignsPage(ctx) {
  const { main, role } = ctx;
  const out = h("section", { class: "card", id: "campaigns" }, h("h2", {}, "Campaigns"));
  clear(main).append(h("h1", {}, "Key-change campaigns"),
    h("p", { class: "muted" }, "A campaign moves meters to a new key: an STS supply group to a new key revision, tariff index or base date (the TID rollover is base date 2014), card and AMI meters to a rotated voucher key, or per-meter keys to a new version. Each meter moves pending → issued → delivered → confirmed (by the meter's own report)."));
  if (api.can(role, "POST", "/campaigns")) main.append(await startForm());
  main.append(out);
  try {
    const rows = items(await api.get("/campaigns"));
    out.append(rows.length ? h("ul", { class: "results" }, rows.map(c => h("li", {}, progressLine(c)))) : h("p", { class: "empty" }, "No campaigns yet."));
  } catch (e) { out.append(errorBox(e)); }

  async function startForm() {
    const groups = api.can(role, "GET", "/supply-groups") ? await api.get("/supply-groups").catch(() => []) : [];
    const name = field("Name", { required: true, id: "camp-name", autocomplete: "off" });
    const kind = field("Kind", { tag: "select", id: "camp-kind", options: [
      { value: "sts", label: "STS key change (supply group)" },
      { value: "voucher-key", label: "Voucher key rotation (card and AMI)" },
      { value: "meter-key", label: "Per-meter key version" }] });
    const sgc = field("Supply group", { tag: "select", id: "camp-sgc", options: groups.map(g => ({ value: g.code, label: g.code + " " + g.name + " (KRN " + g.krn + ", base " + g.base_date + ")" })) });
    const krn = field("New key revision (KRN)", { inputmode: "numeric", id: "camp-krn", autocomplete: "off" }, "empty: keep");
    const base = field("Base date", { tag: "select", id: "camp-base", options: [{ value: "", label: "keep" }, { value: "2014", label: "2014 (TID rollover)" }] });
    const vrole = field("Key", { tag: "select", id: "camp-role", options: [{ value: "credit", label: "credit signing key" }, { value: "management", label: "management signing key" }] });
    const keyVersion = field("Target key version", { inputmode: "numeric", id: "camp-keyver", autocomplete: "off" });
    const meters = field("Meters (optional)", { tag: "textarea", id: "camp-meters", rows: 2 }, "one number per line; empty: every meter the kind applies to");
    const stsFields = h("div", { class: "row start" }, sgc.el, krn.el, base.el);
    const vFields = h("div", { class: "row start" }, vrole.el);
    const mFields = h("div", { class: "row start" }, keyVersion.el);
    const sync = () => { stsFields.hidden = kind.input.value !== "sts"; vFields.hidden = kind.input.value !== "voucher-key"; mFields.hidden = kind.input.value !== "meter-key"; };
    kind.input.addEventListener("change", sync);
    sync();
    const res = h("div", { "aria-live": "polite" });
    return h("section", { class: "card" }, h("h2", {}, "Start a campaign"), h("form", { id: "campaign-form", onsubmit: async e => {
      e.preventDefault();
      clear(res);
      const body = { name: name.input.value.trim(), kind: kind.input.value };
      const list = meters.input.value.split(/[\s,]+/).filter(Boolean);
      if (list.length) body.meters = list;
      if (body.kind === "sts") {
        body.supply_group = sgc.input.value;
        if (krn.input.value.trim()) body.krn = Number(krn.input.value);
        if (base.input.value) body.base_date = Number(base.input.value);
      } else if (body.kind === "voucher-key") body.role = vrole.input.value;
      else if (keyVersion.input.value.trim()) body.key_version = Number(keyVersion.input.value);
      try {
        const r = await api.post("/campaigns", body);
        toast("Campaign started with " + r.enrolled + " meters.");
        ctx.go("campaigns/" + r.status.id);
      } catch (err) {
        res.append(errorBox(err));
        const f = { name: name, supply_group: sgc, krn, base_date: base, key_version: keyVersion, meters }[err.field];
        f?.input.focus();
      }
    } }, h("div", { class: "row start" }, name.el, kind.el), stsFields, vFields, mFields, meters.el,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Start")), res));
  }
}

export async function campaignPage(ctx) {
  const { main, params, role, me } = ctx;
  const id = params[0];
  const c = await api.get("/campaigns/" + api.q(id));
  const p = c.progress || {};
  const target = c.params || {};
  const running = !["done", "finished", "cancelled", "complete", "completed"].includes(c.state);
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Kind"), h("dd", {}, c.kind),
    h("dt", {}, "State"), h("dd", { id: "campaign-state" }, c.state),
    target.supply_group ? [h("dt", {}, "Supply group"), h("dd", {}, target.supply_group)] : null,
    target.krn ? [h("dt", {}, "Key revision"), h("dd", {}, (target.from_krn ? target.from_krn + " → " : "") + target.krn)] : null,
    target.base_date ? [h("dt", {}, "Base date"), h("dd", {}, (target.from_base_date ? target.from_base_date + " → " : "") + target.base_date)] : null,
    target.role ? [h("dt", {}, "Key"), h("dd", {}, target.role + (target.new_version ? " v" + target.new_version : ""))] : null,
    target.key_version ? [h("dt", {}, "Key version"), h("dd", {}, String(target.key_version))] : null,
    h("dt", {}, "Started"), h("dd", {}, when(c.created_at) + " by " + c.created_by),
    c.approved_by ? [h("dt", {}, "Approved"), h("dd", { id: "campaign-approved" }, when(c.approved_at) + " by " + c.approved_by)] : null,
    c.finished_at ? [h("dt", {}, "Finished"), h("dd", {}, when(c.finished_at))] : null);
  const counts = h("table", { id: "campaign-counts" }, h("tbody", {}, ["total", ...CAMPAIGN_STATES].map(k => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "num", "data-state": k }, String(p[k] ?? 0))))));
  const cancel = running && api.can(role, "POST", "/campaigns/{id}/cancel") ? h("button", { type: "button", class: "danger", onclick: async () => {
    if (!confirm("Cancel campaign " + c.name + "? Tokens already issued stay valid.")) return;
    try { await api.post("/campaigns/" + api.q(id) + "/cancel"); toast("Campaign cancelled."); campaignPage(ctx); } catch (e) { toast(e.message); }
  } }, "Cancel campaign") : null;
  // Dual control: a campaign another operator proposed waits for approval.
  const needsApproval = running && !c.approved_by && api.has("POST", "/campaigns/{id}/approve");
  const mineToApprove = c.created_by === me.operator.username || c.created_by === "operator:" + me.operator.username;
  const approve = needsApproval && api.can(role, "POST", "/campaigns/{id}/approve") && !mineToApprove ? h("button", { type: "button", class: "primary", id: "campaign-approve", onclick: async () => {
    try { await api.post("/campaigns/" + api.q(id) + "/approve"); toast("Campaign approved."); campaignPage(ctx); } catch (e) { toast(e.message); }
  } }, "Approve campaign") : null;
  const stateSel = field("Meters in state", { tag: "select", id: "campaign-meter-state", options: [{ value: "", label: "all" }, ...CAMPAIGN_STATES] });
  const list = h("div", { id: "campaign-meters-list" });
  const detail = h("div", { id: "campaign-meter-detail", class: "print-area" });
  clear(main).append(h("h1", {}, c.name),
    h("div", { class: "cols no-print" },
      h("section", { class: "card" }, h("h2", {}, "Target"), facts,
        needsApproval ? h("p", { class: "notice", id: "campaign-needs-approval" }, "This campaign waits for a second operator's approval" + (mineToApprove ? " (not yours: you proposed it)." : ".")) : null,
        !needsApproval && p.pending && running ? h("p", { class: "notice" }, p.pending + " meters wait to be issued: run ", h("code", {}, "sluice keys campaign run " + c.id), " on the head-end.") : null),
      h("section", { class: "card" }, h("h2", {}, "Progress"), progressLine(c), counts, h("div", { class: "actions" }, approve, cancel))),
    h("section", { class: "card no-print", id: "campaign-meters" }, h("h2", {}, "Meters"),
      h("form", { class: "row", onsubmit: e => { e.preventDefault(); load(0, true); } }, stateSel.el, h("button", { type: "submit", class: "primary" }, "Show")), list),
    detail);
  await load(0, true);
  if (ctx.openMeter) await showMeter(ctx.openMeter);

  async function load(after, fresh) {
    if (fresh) clear(list);
    list.querySelector(".more")?.remove();
    try {
      const q = new URLSearchParams({ limit: "100" });
      if (stateSel.input.value) q.set("state", stateSel.input.value);
      if (after) q.set("after", String(after));
      const page = await api.get("/campaigns/" + api.q(id) + "/meters?" + q);
      const ms = page.meters || [];
      let body = list.querySelector("tbody");
      if (!body) {
        body = h("tbody");
        list.append(h("div", { class: "table-wrap" }, h("table", { class: "campaign-meters" },
          h("thead", {}, h("tr", {}, ["Meter", "State", "Tokens", "Issued", "Delivered", "Confirmed", "Detail"].map(l => h("th", { scope: "col" }, l)))),
          body)));
      }
      for (const m of ms) body.append(h("tr", {},
        h("td", {}, api.can(role, "GET", "/campaigns/{id}/meters/{meter}")
          ? h("button", { type: "button", class: "link mono", "data-meter": m.meter, onclick: () => showMeter(m.meter) }, groupPAN(m.meter))
          : h("a", { href: "#/meters/" + encodeURIComponent(m.meter), class: "mono" }, groupPAN(m.meter))),
        h("td", {}, stateBadge(m.state)), h("td", { class: "num" }, String(m.tokens)),
        h("td", {}, m.issued_at ? when(m.issued_at) : "—"), h("td", {}, m.delivered_at ? when(m.delivered_at) : "—"),
        h("td", {}, m.confirmed_at ? when(m.confirmed_at) : "—"), h("td", {}, m.detail || "")));
      if (!body.childElementCount) list.replaceChildren(h("p", { class: "empty" }, "No meters in this state."));
      if (page.next) list.append(h("button", { type: "button", class: "more", onclick: () => load(page.next, false) }, "More meters"));
    } catch (e) { list.append(errorBox(e)); }
  }

  async function showMeter(meter) {
    clear(detail).append(h("p", { class: "muted" }, "Loading…"));
    try {
      const d = await api.get("/campaigns/" + api.q(id) + "/meters/" + api.q(meter));
      const deliver = api.can(role, "POST", "/campaigns/{id}/meters/{meter}/delivered") && d.state === "issued"
        ? h("button", { type: "button", class: "primary", id: "mark-delivered", onclick: async () => {
          try {
            await api.post("/campaigns/" + api.q(id) + "/meters/" + api.q(meter) + "/delivered");
            toast("Marked delivered.");
            await campaignPage({ ...ctx, openMeter: meter });
          } catch (e) { toast(e.message); }
        } }, "Mark delivered") : null;
      const n = d.issued.length;
      clear(detail).append(h("article", { class: "receipt", id: "campaign-tokens", "data-state": d.state, "aria-label": "Key-change tokens for meter " + meter },
        h("header", {}, h("strong", {}, "Key change: " + c.name), h("span", {}, "Meter ", h("span", { class: "mono" }, groupPAN(meter)))),
        h("p", {}, "State: ", stateBadge(d.state), d.detail ? " " + d.detail : ""),
        n ? h("ol", { class: "tokens" }, d.issued.map((t, i) => h("li", { class: "token kind-" + t.kind, "data-kind": t.kind },
          h("span", { class: "token-label" }, (i + 1) + ". " + (t.kind === "key_change" ? "Key change " + (i + 1) + " of " + n : t.kind.replace(/_/g, " "))),
          t.token ? h("output", { class: "token-digits" }, groupToken(t.token)) : h("span", { class: "token-digits voucher" }, "Voucher #" + t.sequence))))
          : h("p", { class: "empty" }, "Nothing issued to this meter yet."),
        h("footer", {}, "Enter the tokens in this order.")),
        h("div", { class: "actions no-print" }, n ? h("button", { type: "button", onclick: () => window.print() }, "Print") : null, deliver));
      detail.scrollIntoView({ block: "nearest" });
      detail.querySelector("button")?.focus();
    } catch (e) { clear(detail).append(errorBox(e)); }
  }
}
