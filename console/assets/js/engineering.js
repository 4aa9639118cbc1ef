// Engineering requests under dual control: an engineer files a request for
// a meter (clear tamper, clear credit, a parameter, a key change); a
// supervisor or administrator other than the requester approves it, and
// only then does the head-end issue the tokens.
import { h, clear, field, errorBox, table, badge, when, toast, groupPAN, groupToken } from "./dom.js";
import * as api from "./api.js";

const ACTIONS = [
  { value: "clear_tamper", label: "Clear tamper" },
  { value: "clear_credit", label: "Clear credit" },
  { value: "set_water_meter_factor", label: "Set water meter factor" },
  { value: "set_parameter", label: "Set a meter parameter (card and AMI)" },
  { value: "key_change", label: "Key change" },
];

function stateBadge(st) { return badge(st, st === "issued" ? "ok" : st === "rejected" ? "bad" : "warn"); }

export async function engineeringPage(ctx) {
  const { main, role, params, me } = ctx;
  const filter = field("State", { tag: "select", id: "eng-state", options: [{ value: "pending", label: "Pending" }, { value: "issued", label: "Issued" }, { value: "rejected", label: "Rejected" }, { value: "", label: "All" }] });
  const list = h("section", { class: "card", id: "eng-list" });
  const detail = h("div", { id: "eng-detail", class: "print-area" });
  clear(main).append(h("h1", { class: "no-print" }, "Engineering requests"),
    h("p", { class: "muted no-print" }, "Management tokens are issued only when a second operator approves the request (dual control)."));
  if (api.can(role, "POST", "/engineering-requests")) main.append(requestForm());
  main.append(h("form", { class: "row card no-print", onsubmit: e => { e.preventDefault(); load(); } }, filter.el, h("button", { type: "submit", class: "primary" }, "Show")), list, detail);
  if (role === "engineer") filter.input.value = "";
  await load();
  if (params[0]) await show(params[0]);

  async function load() {
    clear(list).append(h("h2", {}, "Requests"));
    try {
      const rows = await api.get("/engineering-requests" + (filter.input.value ? "?state=" + filter.input.value : ""));
      list.append(table([
        { label: "#", value: r => h("button", { type: "button", class: "link", "data-request": r.id, onclick: () => show(r.id) }, "#" + r.id) },
        { label: "Requested", value: r => when(r.requested_at), nowrap: true },
        { label: "By", value: r => r.requested_by },
        { label: "Meter", value: r => h("a", { href: "#/meters/" + encodeURIComponent(r.meter), class: "mono" }, groupPAN(r.meter)) },
        { label: "Action", value: r => r.action.replace(/_/g, " ") },
        { label: "Reason", value: r => r.reason },
        { label: "State", value: r => stateBadge(r.state) },
      ], rows, { empty: "No requests in this state." }));
    } catch (e) { list.append(errorBox(e)); }
  }

  async function show(id) {
    clear(detail).append(h("p", { class: "muted" }, "Loading…"));
    try {
      const r = await api.get("/engineering-requests/" + api.q(id));
      const mine = r.requested_by === me.operator.username || r.requested_by === "operator:" + me.operator.username;
      const decide = r.state === "pending" && api.can(role, "POST", "/engineering-requests/{id}/approve") && !mine;
      const reason = field("Reason for rejecting", { id: "eng-reject-reason", autocomplete: "off" });
      clear(detail).append(h("article", { class: "receipt", id: "eng-request", "data-state": r.state, "aria-label": "Engineering request " + r.id },
        h("header", {}, h("strong", {}, "Engineering request #" + r.id), h("span", {}, r.action.replace(/_/g, " "))),
        h("dl", { class: "facts" },
          h("dt", {}, "Meter"), h("dd", { class: "mono" }, groupPAN(r.meter) + " (" + r.meter_kind.toUpperCase() + ")"),
          r.value ? [h("dt", {}, "Value"), h("dd", {}, String(r.value))] : null,
          r.param ? [h("dt", {}, "Parameter"), h("dd", {}, String(r.param))] : null,
          h("dt", {}, "Reason"), h("dd", {}, r.reason),
          h("dt", {}, "Requested"), h("dd", {}, when(r.requested_at) + " by " + r.requested_by),
          h("dt", {}, "State"), h("dd", {}, stateBadge(r.state)),
          r.decided_by ? [h("dt", {}, "Decided"), h("dd", {}, when(r.decided_at) + " by " + r.decided_by)] : null),
        r.tokens?.length ? h("ol", { class: "tokens" }, r.tokens.map((t, i) => h("li", { class: "token kind-" + t.kind, "data-kind": t.kind },
          h("span", { class: "token-label" }, (i + 1) + ". " + (t.label || t.kind)),
          t.token ? h("output", { class: "token-digits" }, groupToken(t.token)) : h("span", { class: "token-digits voucher" }, "Voucher #" + t.sequence)))) : null),
      h("div", { class: "actions no-print" },
        r.tokens?.length ? h("button", { type: "button", onclick: () => window.print() }, "Print") : null,
        decide ? h("button", { type: "button", class: "primary", id: "eng-approve", onclick: async () => {
          try { await api.post("/engineering-requests/" + r.id + "/approve"); toast("Approved; tokens issued."); await load(); show(r.id); } catch (e) { toast(e.message); }
        } }, "Approve and issue") : null,
        r.state === "pending" && mine ? h("p", { class: "hint" }, "Another supervisor or administrator must approve your own request.") : null),
      decide ? h("form", { class: "row card no-print", onsubmit: async e => {
        e.preventDefault();
        try { await api.post("/engineering-requests/" + r.id + "/reject", { reason: reason.input.value.trim() }); toast("Rejected."); await load(); show(r.id); }
        catch (err) { toast(err.message); reason.input.focus(); }
      } }, reason.el, h("button", { type: "submit", class: "danger" }, "Reject")) : "");
      detail.querySelector("button")?.focus();
    } catch (e) { clear(detail).append(errorBox(e)); }
  }

  function requestForm() {
    const meter = field("Meter number", { id: "eng-meter", required: true, autocomplete: "off", inputmode: "numeric" });
    const action = field("Action", { tag: "select", id: "eng-action", options: ACTIONS });
    const value = field("Value", { id: "eng-value", inputmode: "numeric", autocomplete: "off" }, "register, factor or tamper mask, as the action needs");
    const param = field("Parameter", { id: "eng-param", inputmode: "numeric", autocomplete: "off" });
    const reason = field("Reason", { id: "eng-reason", required: true, autocomplete: "off" }, "why the meter needs it (audited)");
    const out = h("div", { "aria-live": "polite" });
    const sync = () => { param.el.hidden = action.input.value !== "set_parameter"; value.el.hidden = action.input.value === "key_change"; };
    action.input.addEventListener("change", sync);
    sync();
    return h("section", { class: "card no-print" }, h("h2", {}, "File a request"), h("form", { id: "eng-form", onsubmit: async e => {
      e.preventDefault();
      clear(out);
      const body = { meter: meter.input.value.replace(/\s/g, ""), action: action.input.value, reason: reason.input.value.trim() };
      if (!value.el.hidden && value.input.value.trim()) body.value = Number(value.input.value);
      if (!param.el.hidden && param.input.value.trim()) body.param = Number(param.input.value);
      try {
        const r = await api.post("/engineering-requests", body);
        out.append(h("p", { class: "success", role: "status" }, "Request #" + r.id + " filed; it waits for a supervisor's approval."));
        e.target.reset();
        sync();
        await load();
      } catch (err) {
        out.append(errorBox(err));
        ({ meter, action, value, param, reason }[err.field])?.input.focus();
      }
    } }, h("div", { class: "row start" }, meter.el, action.el, value.el, param.el), reason.el, h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "File request")), out));
  }
}
