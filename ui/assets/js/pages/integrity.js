// Integrity: the latest signed checkpoint (its signature checked here), the
// tree size, what each witness holds, the last verification and, for
// admins, a new one with progress.

import { h, replace, loading, errorBox, empty, fmtNum } from "../dom.js";
import { get, send, isAdmin } from "../api.js";
import { fmtTime, fmtAgo } from "../time.js";
import { verifyNote, parseVerifierKey } from "../proof.js";

function verifyView(v, title) {
  if (!v) return null;
  const pct = v.records_total ? Math.min(100, (100 * v.records_checked) / v.records_total) : 0;
  const report = v.report || {};
  const findings = report.findings || [];
  const notices = report.notices || [];
  let verdict;
  if (v.running) verdict = h("p", { class: "verdict running" }, "Verifying… " + fmtNum(v.records_checked) + " of " + fmtNum(v.records_total) + " records");
  else if (v.ok) verdict = h("p", { class: "verdict ok", "data-verdict": "ok" }, "✔ Verified: " + fmtNum(report.records) + " records (" + fmtNum(report.pruned) + " pruned), " + fmtNum(report.checkpoints) + " checkpoints");
  else verdict = h("p", { class: "verdict fail", "data-verdict": "fail" }, "✘ " + (v.error ? "Could not run: " + v.error : findings.length + " problem" + (findings.length === 1 ? "" : "s") + " found"));
  return h("div", { class: "verify" },
    h("h3", {}, title),
    verdict,
    v.running ? h("progress", { max: "100", value: String(pct.toFixed(1)), "aria-label": "Verification progress" }, pct.toFixed(0) + " %") : null,
    h("p", { class: "muted" }, (v.incremental ? "Incremental, " : "Whole ledger, ") + "started " + fmtTime(v.started) + (v.by ? " by " + v.by : "") +
      (v.finished ? ", finished " + fmtTime(v.finished) + " (" + fmtAgo(v.finished) + ")" : "")),
    findings.length ? h("ul", { class: "findings" }, findings.map((f) => h("li", {}, h("strong", {}, f.kind + ": "), f.message))) : null,
    notices.length ? h("details", {}, h("summary", {}, notices.length + " notice" + (notices.length === 1 ? "" : "s")), h("ul", {}, notices.map((f) => h("li", {}, h("strong", {}, f.kind + ": "), f.message)))) : null);
}

function keyBox(collectorKey) {
  const own = localStorage.getItem("tg.vkey") || "";
  const input = h("input", { type: "text", id: "vkey", value: own, spellcheck: "false", placeholder: collectorKey || "name+hash+key", "aria-describedby": "vkey-help" });
  const msg = h("span", { class: "form-msg", role: "status" });
  const save = h("button", { type: "button" }, "Save");
  save.addEventListener("click", () => {
    const v = input.value.trim();
    if (!v) {
      localStorage.removeItem("tg.vkey");
      msg.textContent = "Using the collector's key.";
      return;
    }
    try {
      parseVerifierKey(v);
      localStorage.setItem("tg.vkey", v);
      msg.textContent = "Saved in this browser: proofs are checked with it.";
    } catch (e) {
      msg.textContent = e.message;
    }
  });
  return h("div", { class: "vkey" },
    h("label", { for: "vkey" }, "Your copy of the verifier key"),
    h("p", { id: "vkey-help", class: "muted" }, "Proofs and this page check signatures with the collector's key unless you save your own copy here (from your records, not from this collector): then a collector that changed its key cannot pass."),
    h("div", { class: "row" }, input, save), msg);
}

export async function render(ctx) {
  const body = h("div", {}, loading("integrity"));
  const root = h("div", { class: "integrity" }, h("div", { class: "page-head" }, h("h1", {}, "Integrity")), body);
  let timer = null;
  ctx.onCleanup(() => clearTimeout(timer));

  const load = async (background) => {
    const st = await get("/v1/integrity", {}, { background });
    if (!ctx.alive()) return;
    const vkey = localStorage.getItem("tg.vkey") || st.verifier_key;
    const sig = h("span", { class: "sig", role: "status" }, "checking…");
    if (st.checkpoint && vkey) {
      verifyNote(st.checkpoint, vkey).then((r) => {
        sig.textContent = r.status === "ok" ? "✔ signature verified in this browser (" + r.detail + ")" : r.status === "unsupported" ? "signature not checked: " + r.detail : "✘ " + r.detail;
        sig.className = "sig " + r.status;
        sig.dataset.verdict = r.status;
      }).catch((e) => {
        sig.textContent = "✘ " + e.message;
        sig.className = "sig fail";
      });
    } else sig.textContent = "";
    const runBtn = isAdmin() ? h("button", { type: "button", id: "verify-run", class: "primary", disabled: !!st.verify }, st.verify ? "Verifying…" : "Verify the ledger now") : null;
    const incr = isAdmin() ? h("input", { type: "checkbox", id: "verify-incr", disabled: !(st.last_verify && st.last_verify.ok) }) : null;
    const runMsg = h("span", { class: "form-msg", role: "status" });
    if (runBtn) {
      runBtn.addEventListener("click", async () => {
        runBtn.disabled = true;
        try {
          await send("POST", "/v1/integrity/verify", { incremental: incr.checked });
          await load(false);
        } catch (e) {
          runMsg.textContent = e.message;
          runBtn.disabled = false;
        }
      });
    }
    const witnesses = st.witnesses || [];
    replace(body,
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-label": "Latest checkpoint" },
          h("header", {}, h("h2", {}, "Latest signed checkpoint")),
          st.checkpoint ? h("div", {},
            h("dl", { class: "facts" },
              h("dt", {}, "Tree size"), h("dd", { id: "tree-size" }, fmtNum(st.tree_size) + " records"),
              h("dt", {}, "Signed"), h("dd", {}, fmtTime(st.checkpoint_time) + " (" + fmtAgo(st.checkpoint_time) + ")"),
              h("dt", {}, "Ledger"), h("dd", {}, fmtNum(st.ledger_size) + " records, " + fmtNum(st.pruned) + " pruned by retention, " + fmtNum(st.indexed) + " indexed"),
              h("dt", {}, "Origin"), h("dd", {}, st.origin),
              h("dt", {}, "Signature"), h("dd", {}, sig)),
            h("pre", { class: "note-text", tabindex: "0", "aria-label": "Signed checkpoint note" }, st.checkpoint)) : empty("No checkpoint yet.")),
        h("section", { class: "panel", "aria-label": "Witnesses" },
          h("header", {}, h("h2", {}, "Witnesses")),
          witnesses.length ? h("table", { class: "events" }, h("thead", {}, h("tr", {}, ["Witness", "Holds", "Behind", "Signature"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, witnesses.map((w) => h("tr", { class: w.error || (w.signature && w.signature !== "ok") ? "fail" : null },
              h("td", {}, w.name),
              h("td", {}, w.error ? w.error : fmtNum(w.tree_size) + " records, " + fmtTime(w.time)),
              h("td", {}, w.behind !== undefined ? fmtNum(w.behind) + " records" : ""),
              h("td", {}, w.signature || "")))))
            : h("p", { class: "muted" }, "No witness is configured (witness: in the configuration). Without one, the holder of the signing key could rewrite history unnoticed; with one, verify compares against the copies it received.")),
        h("section", { class: "panel wide", "aria-label": "Verification" },
          h("header", {}, h("h2", {}, "Verification")),
          runBtn ? h("div", { class: "row" }, runBtn, h("label", { for: "verify-incr", class: "check" }, incr, " only what was added since the last successful run"), runMsg) : h("p", { class: "muted" }, "Running a verification needs the admin role; anyone can run trailguard verify offline with the verifier key."),
          verifyView(st.verify, "Running"),
          st.last_verify ? verifyView(st.last_verify, "Last result") : (st.verify ? null : empty("The ledger has not been verified from here yet."))),
        h("section", { class: "panel wide", "aria-label": "Verifier key" },
          h("header", {}, h("h2", {}, "Verifier key")),
          h("p", {}, "The collector's key: ", h("code", { class: "break" }, st.verifier_key || st.verifier_key_error || "unknown")),
          keyBox(st.verifier_key))));
    if (st.verify) timer = setTimeout(() => load(true).catch((e) => replace(body, errorBox(e))), 500);
  };
  await load(false).catch((e) => replace(body, errorBox(e, () => load(false))));
  return root;
}
