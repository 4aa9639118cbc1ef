// The dashboard: today's sales, vendor floats, alerts, silent meters and
// key-change campaigns, each from the API the operator's role may read.
import { h, clear, errorBox, money, table, badge, when } from "./dom.js";
import * as api from "./api.js";
import { alertMeter } from "./ops.js";

export async function dashboardPage(ctx) {
  const { main, role, me } = ctx;
  const stats = h("div", { class: "grid", id: "stats" });
  const body = h("div", { class: "cols" });
  clear(main).append(h("h1", {}, "Dashboard"), stats, body);

  if (api.can(role, "POST", "/purchases")) {
    stats.append(h("div", { class: "card" }, h("div", { class: "stat-label" }, "Vending point"), h("div", { class: "stat" }, me.operator.vendor || "—"),
      h("p", {}, h("a", { class: "button primary", href: "#/vend" }, "Start a sale"))));
  }

  if (api.can(role, "GET", "/vendors")) {
    try {
      const vs = await api.get("/vendors");
      const revenue = vs.reduce((a, v) => a + (v.sold_today_cents || 0), 0);
      const floatTotal = vs.reduce((a, v) => a + (v.float_cents || 0), 0);
      stats.append(
        stat("Revenue today", money(revenue), "stat-revenue", "sold by all vending points since midnight"),
        stat("Vendor floats", money(floatTotal), "stat-floats", vs.length + " vending points"));
      body.append(h("section", { class: "card", id: "floats" }, h("h2", {}, "Vendor floats"), table([
        { label: "Vending point", value: v => [h("strong", {}, v.code), " ", v.name, v.disabled ? [" ", badge("disabled", "bad")] : null] },
        { label: "Float", value: v => money(v.float_cents), num: true },
        { label: "Sold today", value: v => money(v.sold_today_cents), num: true },
        { label: "Of daily limit", value: v => {
          const pct = v.daily_limit_cents ? Math.min(100, Math.round(100 * v.sold_today_cents / v.daily_limit_cents)) : 0;
          const bar = h("div", { class: "bar" + (pct > 80 ? " hot" : ""), role: "img", "aria-label": pct + "% of the daily limit" }, h("span"));
          bar.firstChild.style.width = pct + "%"; // CSSOM, allowed by the CSP (no inline style markup)
          return [bar, h("span", { class: "muted" }, pct + "% of " + money(v.daily_limit_cents))];
        } },
      ], vs, { empty: "No vending points yet." })));
    } catch (e) { body.append(errorBox(e)); }
  }
  // Vends today from the purchase journal report, where the head-end has
  // reports and the role may read them.
  if (api.can(role, "GET", "/reports/{name}")) {
    const today = localDate(new Date());
    try {
      const r = await api.get("/reports/vends?from=" + today + "&to=" + today);
      const rows = r.rows || [];
      const sales = rows.filter(x => (x.paid_cents ?? x.tendered_cents ?? 0) > 0).length;
      const reversals = rows.length - sales;
      stats.prepend(stat("Vends today", String(sales), "stat-vends", reversals ? reversals + " reversed" : "purchases since midnight"));
      const rev = stats.querySelector("#stat-revenue");
      if (rev && r.totals?.paid_cents != null) {
        rev.replaceWith(stat("Revenue today", money(r.totals.paid_cents), "stat-revenue", "paid, net of reversals"));
      }
    } catch (e) {
      stats.prepend(stat("Vends today", e.code === "too_large" ? "20 000+" : "—", "stat-vends", e.code === "too_large" ? "see the vends report" : e.message));
    }
  }

  // Alerts: open and acknowledged ones by rule; silent meters are the
  // "silent" rule's alerts.
  const alerts = api.has("GET", "/alerts") ? "/alerts" : null;
  const alertsCard = h("section", { class: "card", id: "dash-alerts" }, h("h2", {}, "Open alerts"));
  const silentCard = h("section", { class: "card", id: "dash-silent" }, h("h2", {}, "Meters silent"));
  body.append(alertsCard, silentCard);
  if (!alerts) {
    alertsCard.append(h("p", { class: "empty" }, "No data yet: this head-end does not raise alerts yet."));
    silentCard.append(h("p", { class: "empty" }, "No data yet: meters' reports are not watched by this head-end yet."));
  } else if (!api.can(role, "GET", alerts)) {
    alertsCard.remove();
    silentCard.remove();
  } else {
    try {
      const all = await Promise.all(["open", "acknowledged"].map(st => api.get(alerts + "?state=" + st + "&limit=1000")));
      const open = all.flatMap(r => Array.isArray(r) ? r : r?.alerts || r?.items || []);
      const byKind = new Map();
      for (const a of open) { const k = a.rule || a.kind || "other"; byKind.set(k, (byKind.get(k) || 0) + 1); }
      const silent = open.filter(a => (a.rule || a.kind) === "silent");
      stats.append(stat("Open alerts", String(open.length), "stat-alerts", open.filter(a => a.severity === "critical").length + " critical"),
        stat("Meters silent", String(silent.length), "stat-silent", "no report within the expected interval"));
      alertsCard.append(byKind.size ? table([
        { label: "Rule", value: ([k]) => h("a", { href: "#/alerts" }, k.replace(/[_-]/g, " ")) },
        { label: "Open", value: ([, n]) => String(n), num: true },
      ], [...byKind.entries()].sort((a, b) => b[1] - a[1]), { class: "alerts-by-kind" }) : h("p", { class: "empty" }, "No open alerts."),
      h("p", {}, h("a", { href: "#/alerts" }, "All alerts")));
      silentCard.append(silent.length ? table([
        { label: "Meter", value: a => alertMeter(a) ? h("a", { href: "#/meters/" + encodeURIComponent(alertMeter(a)), class: "mono" }, alertMeter(a)) : a.subject },
        { label: "Since", value: a => when(a.first_at) },
        { label: "Summary", value: a => a.summary || "" },
      ], silent.slice(0, 10)) : h("p", { class: "empty" }, "Every watched meter has reported recently."));
    } catch (e) { alertsCard.append(errorBox(e)); }
  }

  const camps = api.has("GET", "/campaigns") ? "/campaigns" : null;
  const campCard = h("section", { class: "card", id: "dash-campaigns" }, h("h2", {}, "Key-change campaigns"));
  body.append(campCard);
  if (!camps) campCard.append(h("p", { class: "empty" }, "No data yet: key-change campaigns are not available on this head-end yet."));
  else if (!api.can(role, "GET", camps)) campCard.remove();
  else {
    try {
      let rows = await api.get(camps);
      rows = Array.isArray(rows) ? rows : rows?.items || [];
      campCard.append(rows.length ? h("ul", { class: "results" }, rows.slice(0, 5).map(c => h("li", {}, progressLine(c)))) : h("p", { class: "empty" }, "No campaigns."),
        h("p", {}, h("a", { href: "#/campaigns" }, "All campaigns")));
    } catch (e) { campCard.append(errorBox(e)); }
  }
  if (!stats.childElementCount) stats.remove();
}

function localDate(d) {
  return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
}

function stat(label, value, id, hint) {
  return h("div", { class: "card", id }, h("div", { class: "stat-label" }, label), h("div", { class: "stat" }, value), hint ? h("div", { class: "hint" }, hint) : null);
}

// progressLine shows a campaign's progress: meters issued, delivered and
// confirmed by the meter itself, and failed, of all enrolled.
export function progressLine(c) {
  const p = c.progress || c;
  const total = p.total ?? 0;
  const parts = [["confirmed", p.confirmed], ["delivered", p.delivered], ["issued", p.issued], ["failed", p.failed]].filter(([, n]) => n);
  const bar = h("div", { class: "bar stacked", role: "img", "aria-label": parts.map(([k, n]) => n + " " + k).join(", ") + " of " + total });
  for (const [k, n] of parts) {
    const seg = h("span", { class: "seg-" + k });
    seg.style.width = (total ? 100 * n / total : 0) + "%"; // CSSOM, allowed by the CSP
    bar.append(seg);
  }
  const done = (p.confirmed || 0);
  return h("a", { href: "#/campaigns/" + encodeURIComponent(c.id ?? c.campaign ?? c.name), class: "campaign-line" },
    h("span", {}, h("strong", {}, c.name || "Campaign " + c.id), " ", c.kind ? badge(c.kind) : null, " ", badge(c.state || "", c.state === "done" || c.state === "finished" ? "ok" : c.state === "cancelled" ? "bad" : "")),
    bar,
    h("span", { class: "muted" }, done + " of " + total + " meters confirmed" + (total ? " (" + Math.round(100 * done / total) + "%)" : "") +
      (p.pending ? ", " + p.pending + " pending" : "") + (p.failed ? ", " + p.failed + " failed" : "")));
}
