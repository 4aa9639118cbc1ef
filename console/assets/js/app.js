// The console's shell: session, role-aware navigation and a hash router.
import { h, clear, field, errorBox, badge } from "./dom.js";
import * as api from "./api.js";
import { vendPage, receiptPage } from "./vend.js";
import { meterPage, metersPage, customerPage } from "./meter.js";
import { dashboardPage } from "./dashboard.js";
import { operatorsPage, auditPage, webhooksPage } from "./admin.js";
import { alertsPage, campaignsPage, campaignPage } from "./ops.js";
import { reportsPage } from "./reports.js";
import { engineeringPage } from "./engineering.js";
import { vendorsPage, tariffsPage } from "./registry.js";

const main = document.getElementById("main");
const state = { me: null };

// Pages: a hash pattern, the nav entry (if any) and who sees it.
const pages = [
  { re: /^$/, nav: "Dashboard", render: dashboardPage, show: () => true },
  { re: /^vend$/, nav: "Vend", render: vendPage, show: r => api.can(r, "POST", "/purchases") },
  { re: /^receipts(?:\/(\d+))?$/, nav: "Receipts", href: "receipts", render: receiptPage, show: r => api.can(r, "GET", "/purchases/{id}") },
  { re: /^vendors$/, nav: "Floats", render: vendorsPage, show: r => api.can(r, "GET", "/vendors") },
  { re: /^meters$/, nav: "Meters", render: metersPage, show: r => api.can(r, "GET", "/meters") },
  { re: /^meters\/(.+)$/, render: meterPage, show: r => api.can(r, "GET", "/meters/{number}") },
  { re: /^customers\/(.+)$/, render: customerPage, show: r => api.can(r, "GET", "/customers/{account}") },
  { re: /^tariffs$/, nav: "Tariffs", render: tariffsPage, show: r => api.can(r, "GET", "/tariffs") },
  { re: /^alerts$/, nav: "Alerts", render: alertsPage, show: r => api.can(r, "GET", "/alerts") },
  { re: /^campaigns$/, nav: "Key changes", render: campaignsPage, show: r => api.can(r, "GET", "/campaigns") },
  { re: /^campaigns\/(\d+)$/, render: campaignPage, show: r => api.can(r, "GET", "/campaigns/{id}") },
  { re: /^engineering(?:\/(\d+))?$/, nav: "Engineering", href: "engineering", render: engineeringPage, show: r => api.can(r, "GET", "/engineering-requests") },
  { re: /^reports$/, nav: "Reports", render: reportsPage, show: r => api.can(r, "GET", "/reports") && api.can(r, "GET", "/reports/{name}") },
  { re: /^operators$/, nav: "Operators", render: operatorsPage, show: r => api.can(r, "GET", "/operators") },
  { re: /^webhooks$/, nav: "Webhooks", render: webhooksPage, show: r => api.can(r, "GET", "/webhooks/subscribers") },
  { re: /^audit$/, nav: "Audit", render: auditPage, show: r => api.can(r, "GET", "/audit") },
];

function route() {
  return decodeURIComponent(location.hash.replace(/^#\/?/, ""));
}

async function start() {
  await api.loadSpec();
  api.onAuthLost(err => {
    if (err.code === "password_change_required") { state.me && (state.me.must_change_password = true); passwordPage(); }
    else { state.me = null; loginPage("Your session has ended; log in again."); }
  });
  const closeMenu = () => {
    document.getElementById("nav").classList.remove("open");
    document.getElementById("menu-toggle").setAttribute("aria-expanded", "false");
  };
  document.getElementById("nav").addEventListener("click", e => { if (e.target.closest("a")) closeMenu(); });
  document.addEventListener("keydown", e => {
    const nav = document.getElementById("nav");
    if (e.key === "Escape" && nav.classList.contains("open")) {
      closeMenu();
      document.getElementById("menu-toggle").focus();
    }
  });
  window.addEventListener("hashchange", () => { closeMenu(); render(); });
  document.getElementById("menu-toggle").addEventListener("click", e => {
    const nav = document.getElementById("nav");
    const open = nav.classList.toggle("open");
    e.currentTarget.setAttribute("aria-expanded", String(open));
  });
  try {
    const me = await api.get("/auth/me");
    state.me = me?.operator ? me : null; // anything else is no head-end API
  } catch (e) {
    if (e instanceof api.NetworkError) { clear(main).append(errorBox(e)); return; }
    state.me = null;
  }
  render();
}

function render() {
  if (!state.me) {
    const msg = state.message;
    state.message = null;
    return loginPage(msg);
  }
  if (state.me.must_change_password) return passwordPage();
  const role = state.me.operator.role;
  const path = route();
  shell(role, path);
  for (const p of pages) {
    const m = p.re.exec(path);
    if (!m) continue;
    clear(main);
    if (!p.show(role)) {
      main.append(h("h1", {}, "Not available"), h("p", {}, "Your role (" + role + ") cannot open this page, or this head-end does not offer it yet."));
      return;
    }
    // Each render draws into a view of its own: a page still loading when
    // the operator moves on writes into a detached view, never over the
    // page that replaced it.
    const view = h("div", { class: "view" });
    main.append(view);
    const ctx = { role, me: state.me, main: view, params: m.slice(1), go: (hash) => { location.hash = "#/" + hash; } };
    Promise.resolve(p.render(ctx)).catch(e => view.append(errorBox(e)));
    focusMain();
    return;
  }
  clear(main).append(h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the dashboard")));
}

function focusMain() {
  // Move focus to the page's heading so keyboard and screen-reader users
  // start at the top of the new page.
  requestAnimationFrame(() => {
    const target = main.querySelector("[autofocus]") || main;
    target.focus({ preventScroll: false });
  });
}

function shell(role, path) {
  const top = document.getElementById("top");
  top.hidden = false;
  const nav = clear(document.getElementById("nav"));
  const section = path.split("/")[0];
  for (const p of pages) {
    if (!p.nav || !p.show(role)) continue;
    const href = p.href ?? (p.re.source.replace(/^\^|\$$/g, ""));
    const target = href === "" ? "" : href;
    nav.append(h("a", { href: "#/" + target, "aria-current": (target === section || (target === "" && path === "")) ? "page" : undefined }, p.nav));
  }
  const o = state.me.operator;
  clear(document.getElementById("who")).append(h("span", {}, o.display_name || o.username), badge(role, "role"));
  if (o.vendor) document.getElementById("who").append(h("span", {}, "@ " + o.vendor));
  document.getElementById("who").append(h("button", { type: "button", onclick: logout }, "Log out"));
}

async function logout() {
  try { await api.post("/auth/logout"); } catch { /* the session is gone either way */ }
  state.me = null;
  state.message = "You have logged out.";
  // One render only: a hash change renders by itself, and a second render
  // would replace the login form under the operator's fingers.
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  else render();
}

// hideShell removes the navigation and the operator's name while nobody
// is logged in (hidden is not enough: they would stay in the document).
function hideShell() {
  document.getElementById("top").hidden = true;
  document.getElementById("toast").textContent = "";
  clear(document.getElementById("nav"));
  clear(document.getElementById("who"));
}

function loginPage(message) {
  hideShell();
  const user = field("Username", { name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const pass = field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const out = h("div", { "aria-live": "polite" });
  const btn = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "stack", id: "login-form", novalidate: true, onsubmit: async e => {
    e.preventDefault();
    clear(out);
    btn.disabled = true;
    try {
      state.me = await api.post("/auth/login", { username: user.input.value.trim(), password: pass.input.value });
      pass.input.value = "";
      render();
    } catch (err) {
      out.append(errorBox(err.code === "unauthenticated" ? new Error("Wrong username or password.") : err));
      pass.input.select();
      btn.disabled = false;
    }
  } }, user.el, pass.el, h("div", { class: "actions" }, btn), out);
  clear(main).append(h("div", { class: "card login" },
    h("h1", {}, "Log in to Sluice"),
    message ? h("p", { class: "notice" }, message) : null,
    form,
    h("details", {}, h("summary", {}, "First run?"),
      h("p", { class: "hint" }, "The first administrator is ", h("strong", {}, "admin"), ". Its one-time password is in the file ",
        h("code", {}, "bootstrap-admin.txt"), " in the head-end's data directory (readable only by the service account). You will choose your own password right after logging in."))));
  user.input.focus();
}

function passwordPage() {
  hideShell();
  const cur = field("Current (one-time) password", { type: "password", autocomplete: "current-password", required: true, id: "pw-current" });
  const nw = field("New password", { type: "password", autocomplete: "new-password", required: true, minlength: 12, id: "pw-new" }, "At least 12 characters; a few unrelated words work well.");
  const again = field("New password again", { type: "password", autocomplete: "new-password", required: true, id: "pw-again" });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack", id: "password-form", novalidate: true, onsubmit: async e => {
    e.preventDefault();
    clear(out);
    if (nw.input.value !== again.input.value) {
      again.input.setAttribute("aria-invalid", "true");
      out.append(errorBox(new Error("The two new passwords differ.")));
      again.input.focus();
      return;
    }
    try {
      await api.post("/auth/password", { current_password: cur.input.value, new_password: nw.input.value });
      state.me = await api.get("/auth/me");
      location.hash = "#/";
      render();
    } catch (err) {
      out.append(errorBox(err));
      (err.field === "current_password" ? cur.input : nw.input).focus();
    }
  } }, cur.el, nw.el, again.el, h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, "Change password"),
    h("button", { type: "button", onclick: logout }, "Log out")), out);
  const who = state.me?.operator;
  clear(main).append(h("div", { class: "card login" },
    h("h1", {}, "Choose your password"),
    h("p", {}, "You logged in", who ? " as " + who.username : "", " with a one-time password. Choose your own before you continue."),
    form));
  cur.input.focus();
}

start();
