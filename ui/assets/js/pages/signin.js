import { h } from "../dom.js";
import { signIn, currentSession } from "../api.js";

// Where to go after signing in: only a path inside the UI (never another
// site, whatever ?next= says).
function nextPath(params) {
  const n = params.get("next") || "/ui/";
  if (!n.startsWith("/ui/") || n.startsWith("/ui/signin") || n.startsWith("//")) return "/ui/";
  return n;
}

export async function render(ctx) {
  if (currentSession()) {
    ctx.go(nextPath(ctx.params), { replace: true });
    return h("p", {}, "Signed in.");
  }
  const msg = h("p", { class: "form-msg", role: "alert", id: "signin-msg" });
  if (ctx.params.get("expired")) msg.textContent = "Your session expired. Sign in again.";
  const token = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true, spellcheck: "false", "aria-describedby": "token-help signin-msg" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "signin", novalidate: true },
    h("h1", {}, "Sign in"),
    h("p", { id: "token-help", class: "muted" }, "Use an API token of role read or admin (", h("code", {}, "trailguard token create --role read --name you"), "). It is checked by the collector and kept only in its memory for this session."),
    h("label", { for: "token" }, "API token"),
    token,
    button,
    msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!token.value.trim()) {
      msg.textContent = "Enter a token.";
      token.focus();
      return;
    }
    button.disabled = true;
    msg.textContent = "";
    try {
      await signIn(token.value.trim());
      token.value = "";
      ctx.go(nextPath(ctx.params), { replace: true });
    } catch (e) {
      msg.textContent = e.status === 429 ? "Too many failed attempts from this address. Try again in " + (e.retryAfter || "a few") + " s." : e.message;
      token.select();
    } finally {
      button.disabled = false;
    }
  });
  setTimeout(() => token.focus(), 0);
  return form;
}
