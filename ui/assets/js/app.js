// The UI's shell: session, navigation between pages without reloading
// (history.pushState, so every page state is a URL: shareable, and the back
// button works), keyboard shortcuts, and the page modules.

import { h, replace, errorBox, loading } from "./dom.js";
import { loadSession, currentSession, onSessionChange, signOut } from "./api.js";
import * as overview from "./pages/overview.js";
import * as search from "./pages/search.js";
import * as eventPage from "./pages/event.js";
import * as trace from "./pages/trace.js";
import * as alerts from "./pages/alerts.js";
import * as blocks from "./pages/blocks.js";
import * as integrity from "./pages/integrity.js";
import * as reports from "./pages/reports.js";
import * as signin from "./pages/signin.js";

const PAGES = {
  "": { mod: overview, title: "Overview", nav: true, key: "o" },
  search: { mod: search, title: "Search", nav: true, key: "s" },
  trace: { mod: trace, title: "Request trace", nav: true, key: "t" },
  alerts: { mod: alerts, title: "Alerts", nav: true, key: "a" },
  blocks: { mod: blocks, title: "Blocks", nav: true, key: "b" },
  integrity: { mod: integrity, title: "Integrity", nav: true, key: "i" },
  reports: { mod: reports, title: "Reports", nav: true, key: "r" },
  event: { mod: eventPage, title: "Event" },
  signin: { mod: signin, title: "Sign in", public: true },
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let cleanup = null;
let renderSeq = 0;

function pageName(pathname) {
  let p = pathname.replace(/^\/ui\/?/, "").replace(/\/$/, "");
  if (p === "overview") p = "";
  return p;
}

// go navigates inside the UI: push (a new history entry) or replace.
export function go(href, opts = {}) {
  const u = new URL(href, location.origin);
  if (u.origin !== location.origin || !u.pathname.startsWith("/ui/")) return;
  if (opts.replace) history.replaceState(null, "", u.pathname + u.search + u.hash);
  else if (u.pathname + u.search + u.hash !== location.pathname + location.search + location.hash) history.pushState(null, "", u.pathname + u.search + u.hash);
  render();
}

// setParams changes the current page's query parameters (a new history
// entry unless replace), then re-renders.
export function setParams(params, opts = {}) {
  const u = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") u.searchParams.delete(k);
    else u.searchParams.set(k, String(v));
  }
  go(u.pathname + u.search, opts);
}

function renderNav(active) {
  const sess = currentSession();
  replace(nav, Object.entries(PAGES).filter(([, p]) => p.nav).map(([name, p]) =>
    h("a", { href: "/ui/" + name, "aria-current": name === active ? "page" : null, "aria-keyshortcuts": "g " + p.key, title: p.title + " (g then " + p.key + ")" }, p.title)));
  nav.hidden = !sess;
  if (sess) {
    replace(who, h("span", { class: "user" }, h("span", { class: "sr-only" }, "Signed in as "), sess.name, " ", h("span", { class: ["role", sess.role] }, sess.role)),
      h("button", { type: "button", id: "signout", class: "link", on: { click: doSignOut } }, "Sign out"));
  } else {
    replace(who);
  }
}

async function doSignOut() {
  await signOut();
  go("/ui/signin", { replace: true });
}

export async function render() {
  const seq = ++renderSeq;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      /* a page's cleanup must not break navigation */
    }
    cleanup = null;
  }
  const name = pageName(location.pathname);
  const page = PAGES[name];
  const params = new URLSearchParams(location.search);
  if (!page) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "/ui/" }, "Go to the overview")));
    return;
  }
  if (!page.public && !currentSession()) {
    const next = location.pathname + location.search;
    history.replaceState(null, "", "/ui/signin?next=" + encodeURIComponent(next));
    return render();
  }
  renderNav(name);
  document.title = page.title + " · trailguard";
  replace(main, loading(page.title.toLowerCase()));
  const ctx = {
    params,
    go,
    setParams,
    alive: () => seq === renderSeq,
    onCleanup: (fn) => {
      const prev = cleanup;
      cleanup = () => {
        if (prev) prev();
        fn();
      };
    },
  };
  try {
    const node = await page.mod.render(ctx);
    if (seq !== renderSeq) return;
    replace(main, node);
    // Pages that await their data before returning (search, trace, …) have
    // it on screen now; the overview marks tg:data when its panels fill.
    performance.mark("tg:rendered");
    const h1 = main.querySelector("h1");
    if (h1 && !params.has("nofocus")) {
      h1.tabIndex = -1;
      h1.focus({ preventScroll: true });
    }
  } catch (e) {
    if (seq !== renderSeq) return;
    replace(main, h("h1", {}, page.title), errorBox(e, () => render()));
  }
}

// Links inside the UI navigate without a reload; modified clicks (new tab)
// keep the browser's behaviour.
document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const u = new URL(a.href, location.origin);
  if (u.origin !== location.origin || !u.pathname.startsWith("/ui/")) return;
  ev.preventDefault();
  go(u.pathname + u.search + u.hash);
});

window.addEventListener("popstate", () => render());

window.addEventListener("tg:signedout", (ev) => {
  if (pageName(location.pathname) === "signin") return;
  const next = location.pathname + location.search;
  const q = "next=" + encodeURIComponent(next) + (ev.detail && ev.detail.expired ? "&expired=1" : "");
  history.replaceState(null, "", "/ui/signin?" + q);
  render();
});

// Keyboard: "/" focuses the page's search box; "g" then a letter goes to a
// page (as in many web consoles); "?" lists the shortcuts.
let gPending = 0;
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
    if (ev.key === "Escape") t.blur();
    return;
  }
  if (!currentSession()) return;
  if (ev.key === "/") {
    const q = document.getElementById("q");
    if (q) {
      ev.preventDefault();
      q.focus();
      q.select();
    }
    return;
  }
  if (ev.key === "?") {
    document.getElementById("shortcuts").hidden = !document.getElementById("shortcuts").hidden;
    return;
  }
  if (ev.key === "g") {
    gPending = Date.now();
    return;
  }
  if (Date.now() - gPending < 1500) {
    gPending = 0;
    const e = Object.entries(PAGES).find(([, p]) => p.key === ev.key);
    if (e) {
      ev.preventDefault();
      go("/ui/" + e[0]);
    }
  }
});

onSessionChange(() => renderNav(pageName(location.pathname)));

(async () => {
  await loadSession();
  render();
})();
