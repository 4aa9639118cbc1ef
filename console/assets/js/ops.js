// Revenue protection and field operations: alerts and key-change
// campaigns. Their API routes come with the telemetry and campaign
// releases; until a head-end has them these pages say so.
import { h, clear, field, errorBox, table, badge, when, toast, groupPAN } from "./dom.js";
import * as api from "./api.js";
import { autoTable } from "./meter.js";
import { progressLine } from "./dashboard.js";

function items(r) { return Array.isArray(r) ? r : r?.items || r?.alerts || r?.campaigns || r?.meters || []; }

export async function alertsPage(ctx) {
  const { main, role } = ctx;
  const list = api.find("GET", /^\/alerts$/);
  const ack = api.find("POST", /^\/alerts\/\{[a-z_]+\}\/(ack|acknowledge)$/);
  const resolve = api.find("POST", /^\/alerts\/\{[a-z_]+\}\/resolve$/);
  const stateSel = field("Show", { tag: "select", id: "alert-state", options: [{ value: "open", label: "Open" }, { value: "acknowledged", label: "Acknowledged" }, { value: "resolved", label: "Resolved" }, { value: "", label: "All" }] });
  const out = h("section", { class: "card", id: "alerts" });
  clear(main).append(h("h1", {}, "Alerts"),
    h("form", { class: "row card", onsubmit: e => { e.preventDefault(); load(); } }, stateSel.el, h("button", { type: "submit", class: "primary" }, "Show")),
    out);
  await load();

  async function load() {
    clear(out);
    try {
      const st = stateSel.input.value;
      const rows = items(await api.get(list + (st ? "?state=" + api.q(st) : "")));
      out.append(table([
        { label: "Raised", value: a => when(a.raised_at || a.created_at || a.at) },
        { label: "Kind", value: a => (a.kind || "").replace(/_/g, " ") },
        { label: "Meter", value: a => a.meter ? h("a", { href: "#/meters/" + encodeURIComponent(a.meter), class: "mono" }, groupPAN(a.meter)) : "—" },
        { label: "Detail", value: a => a.message || a.detail || a.details || "" },
        { label: "State", value: a => badge(a.state || "open", a.state === "resolved" ? "ok" : a.state === "acknowledged" ? "warn" : "bad") },
        { label: "Actions", value: a => actions(a) },
      ], rows, { empty: "No alerts in this state." }));
    } catch (e) { out.append(errorBox(e)); }
  }

  function actions(a) {
    const id = a.id;
    const box = h("div", { class: "actions" });
    if (ack && api.can(role, "POST", ack) && (a.state || "open") === "open") {
      box.append(h("button", { type: "button", onclick: async () => {
        try { await api.post(api.fill(ack, { id }), {}); toast("Alert acknowledged."); load(); } catch (e) { toast(e.message); }
      } }, "Acknowledge"));
    }
    if (resolve && api.can(role, "POST", resolve) && a.state !== "resolved") {
      const note = field("Resolution note", { tag: "textarea", required: true, rows: 2 });
      const form = h("form", { hidden: true, onsubmit: async e => {
        e.preventDefault();
        if (!note.input.value.trim()) { note.input.setAttribute("aria-invalid", "true"); note.input.focus(); return; }
        try { await api.post(api.fill(resolve, { id }), { note: note.input.value.trim() }); toast("Alert resolved."); load(); } catch (err) { toast(err.message); }
      } }, note.el, h("button", { type: "submit", class: "primary" }, "Resolve"));
      box.append(h("button", { type: "button", onclick: () => { form.hidden = false; note.input.focus(); } }, "Resolve…"), form);
    }
    return box;
  }
}

export async function campaignsPage(ctx) {
  const { main, role } = ctx;
  const list = api.find("GET", /campaigns$/);
  const create = api.find("POST", /campaigns$/);
  const out = h("section", { class: "card", id: "campaigns" }, h("h2", {}, "Campaigns"));
  clear(main).append(h("h1", {}, "Key-change campaigns"),
    h("p", { class: "muted" }, "A campaign moves the meters of a supply group to a new key revision or base date in phases; each meter takes its key-change tokens with its next purchase or from an engineer."));
  if (create && api.can(role, "POST", create)) main.append(startForm(create));
  main.append(out);
  try {
    const rows = items(await api.get(list));
    out.append(rows.length ? h("ul", { class: "results" }, rows.map(c => h("li", {}, progressLine(c)))) : h("p", { class: "empty" }, "No campaigns yet."));
  } catch (e) { out.append(errorBox(e)); }

  function startForm(path) {
    const name = field("Name", { required: true, id: "camp-name" });
    const sgc = field("Supply group", { required: true, inputmode: "numeric", id: "camp-sgc" });
    const krn = field("New key revision (KRN)", { inputmode: "numeric", id: "camp-krn" });
    const base = field("New base date", { tag: "select", id: "camp-base", options: ["2014", "1993", "2035"] });
    const res = h("div", { "aria-live": "polite" });
    return h("section", { class: "card" }, h("h2", {}, "Start a campaign"), h("form", { onsubmit: async e => {
      e.preventDefault();
      clear(res);
      try {
        const c = await api.post(path, { name: name.input.value.trim(), supply_group: sgc.input.value.trim(), krn: Number(krn.input.value) || undefined, base_date: Number(base.input.value) });
        toast("Campaign started.");
        ctx.go("campaigns/" + encodeURIComponent(c.id ?? c.code ?? ""));
      } catch (err) { res.append(errorBox(err)); }
    } }, h("div", { class: "row" }, name.el, sgc.el, krn.el, base.el), h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Start")), res));
  }
}

export async function campaignPage(ctx) {
  const { main, params, role } = ctx;
  const one = api.find("GET", /campaigns\/\{[a-z_]+\}$/);
  const meters = api.find("GET", /campaigns\/\{[a-z_]+\}\/meters$/);
  clear(main).append(h("h1", {}, "Campaign " + params[0]));
  if (!one) { main.append(h("p", { class: "empty" }, "No data yet.")); return; }
  const c = await api.get(api.fill(one, { id: params[0] }));
  main.append(h("section", { class: "card" }, progressLine(c), autoTable([c], "")));
  const sec = h("section", { class: "card", id: "campaign-meters" }, h("h2", {}, "Meters"));
  main.append(sec);
  const rows = meters && api.can(role, "GET", meters) ? items(await api.get(api.fill(meters, { id: params[0] })).catch(() => [])) : items(c.meters);
  sec.append(autoTable(rows, "No meters in this campaign."));
}
