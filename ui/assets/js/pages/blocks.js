// Blocks: the block decisions in force with their remaining time, unblock
// for admins, and the allowlist of networks never blocked.

import { h, replace, loading, errorBox, empty, fmtNum, uiURL } from "../dom.js";
import { send, optional, list, isAdmin } from "../api.js";
import { fmtTime, fmtDuration } from "../time.js";
import { term } from "../fields.js";

export async function render(ctx) {
  const body = h("div", {}, loading("decisions"));
  const allowBox = h("section", { class: "panel", "aria-label": "Allowlist" }, h("header", {}, h("h2", {}, "Allowlist")));
  const root = h("div", { class: "blocks" }, h("div", { class: "page-head" }, h("h1", {}, "Blocks")), body, allowBox);
  let timer = null;
  ctx.onCleanup(() => clearInterval(timer));

  const load = async () => {
    const r = await optional("/v1/decisions", {});
    if (!ctx.alive()) return;
    if (r.missing) {
      replace(body, h("p", { class: "state pending" }, "This collector does not serve block decisions yet (GET /v1/decisions)."));
      allowBox.append(h("p", { class: "muted" }, "Not available."));
      return;
    }
    const items = list(r.body, "decisions", "active", "items");
    const ttls = [];
    const rows = items.map((d) => {
      const ttl = h("td", { class: "ttl" }, fmtDuration(Date.parse(d.until) - Date.now()));
      ttls.push([ttl, Date.parse(d.until)]);
      const msg = h("span", { class: "form-msg", role: "status" });
      let act = null;
      if (isAdmin()) {
        act = h("button", { type: "button", class: "unblock", "aria-label": "Unblock " + d.value }, "Unblock");
        let armed = 0;
        act.addEventListener("click", async () => {
          // Two steps instead of a modal dialog: the first click asks.
          if (Date.now() - armed > 5000) {
            armed = Date.now();
            act.textContent = "Confirm unblock";
            msg.textContent = "Bouncers lift the ban at their next poll.";
            setTimeout(() => {
              if (Date.now() - armed >= 5000 && act.isConnected) {
                act.textContent = "Unblock";
                msg.textContent = "";
              }
            }, 5100);
            return;
          }
          act.disabled = true;
          try {
            await send("DELETE", "/v1/decisions/" + encodeURIComponent(d.id));
            await load();
          } catch (e) {
            msg.textContent = e.message;
            act.disabled = false;
          }
        });
      }
      const field = d.scope === "Username" ? "user.name" : "client.ip";
      return h("tr", { dataset: { value: d.value } },
        h("td", {}, h("a", { href: uiURL("/ui/search", { q: d.scope === "Range" ? field + ":" + d.value : term(field, d.value), from: "24h" }) }, h("code", {}, d.value))),
        h("td", {}, d.scope || ""),
        h("td", {}, d.scenario || ""),
        h("td", {}, d.alert_id ? h("a", { href: uiURL("/ui/alerts", { id: d.alert_id, status: "all" }) }, "alert") : d.by ? "by " + d.by : ""),
        h("td", {}, d.offence ? "#" + d.offence : ""),
        h("td", {}, fmtTime(d.created)),
        ttl,
        h("td", {}, act, msg));
    });
    replace(body,
      h("p", { class: "summary", role: "status" }, fmtNum(items.length) + " decision" + (items.length === 1 ? "" : "s") + " in force." + (isAdmin() ? "" : " Unblocking needs the admin role.")),
      items.length ? h("div", { class: "table-wrap" }, h("table", { class: "events decisions", "aria-label": "Block decisions in force" },
        h("thead", {}, h("tr", {}, ["Value", "Scope", "Reason", "From", "Offence", "Since", "Remaining"].map((c) => h("th", { scope: "col" }, c)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
        h("tbody", {}, rows))) : empty("Nobody is blocked."));
    clearInterval(timer);
    timer = setInterval(() => {
      for (const [td, until] of ttls) td.textContent = fmtDuration(until - Date.now());
    }, 1000);
    const al = await optional("/v1/decisions/allowlist", {}).catch(() => ({ missing: true }));
    if (!ctx.alive()) return;
    const allow = al.missing ? null : al.body.allowlist;
    replace(allowBox, h("header", {}, h("h2", {}, "Allowlist")),
      Array.isArray(allow) ? (allow.length ? h("ul", { class: "allowlist" }, allow.map((a) => h("li", {}, h("code", {}, a)))) : empty("No allowlisted networks (decisions.allowlist)."))
        : h("p", { class: "muted" }, "Networks in decisions.allowlist (configuration) are never blocked; this collector does not list them."));
  };
  await load().catch((e) => replace(body, errorBox(e, load)));
  return root;
}
