// Checking an event's inclusion proof in the browser, with Web Crypto only:
//
//  1. the checkpoint is a C2SP signed note; its Ed25519 signature is checked
//     with the verifier key (name+keyhash+base64(0x01‖public key)), if the
//     browser's Web Crypto has Ed25519 (Chromium, Firefox, Safari 17+);
//  2. the event's bytes hash to the leaf: SHA-256(0x00 ‖ record) (RFC 6962);
//  3. the audit path folds the leaf up to the root the checkpoint signs
//     (RFC 9162 §2.1.3.2), with node hashes SHA-256(0x01 ‖ left ‖ right).
//
// Nothing here trusts the server's own claims (root_hash, leaf_hash): the
// root comes from the signed note, the leaf from the record's bytes.

const enc = new TextEncoder();

export function b64decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function hex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

export async function leafHash(record) {
  return sha256(concat(new Uint8Array([0]), record));
}

async function nodeHash(l, r) {
  return sha256(concat(new Uint8Array([1]), l, r));
}

// rootFromInclusionProof computes the root from a leaf hash at index in a
// tree of size, per RFC 9162 §2.1.3.2; it throws on a malformed proof.
export async function rootFromInclusionProof(index, size, leaf, proof) {
  if (!(index < size)) throw new Error("index " + index + " is not below tree size " + size);
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Error("proof is longer than the path");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("proof is shorter than the path");
  return r;
}

// parseNote splits a C2SP signed note into its text and signature lines.
export function parseNote(noteText) {
  const i = noteText.lastIndexOf("\n\n");
  if (i < 0) throw new Error("not a signed note (no blank line before the signatures)");
  const text = noteText.slice(0, i + 1);
  const sigs = [];
  for (const line of noteText.slice(i + 2).split("\n")) {
    if (line === "") continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error("malformed signature line");
    const raw = b64decode(m[2]);
    if (raw.length < 5) throw new Error("signature too short");
    sigs.push({ name: m[1], keyID: raw.slice(0, 4), sig: raw.slice(4) });
  }
  return { text, sigs };
}

// parseCheckpoint reads a C2SP tlog-checkpoint body: origin, size, root.
export function parseCheckpoint(text) {
  const lines = text.split("\n");
  if (lines.length < 4) throw new Error("checkpoint too short");
  const size = lines[1];
  if (!/^\d+$/.test(size)) throw new Error("checkpoint size is not a number");
  const root = b64decode(lines[2]);
  if (root.length !== 32) throw new Error("checkpoint root is not 32 bytes");
  const time = lines.slice(3).find((l) => l.startsWith("time "));
  return { origin: lines[0], size: BigInt(size), root, time: time ? time.slice(5) : "" };
}

// parseVerifierKey reads "name+hash+base64(0x01‖key)".
export function parseVerifierKey(vkey) {
  // The key is base64, which may hold "+": split at the first two only.
  const v = vkey.trim();
  const i = v.indexOf("+");
  const j = i < 0 ? -1 : v.indexOf("+", i + 1);
  if (i <= 0 || j < 0) throw new Error("verifier key must be name+hash+key");
  const name = v.slice(0, i), hashHex = v.slice(i + 1, j), keyB64 = v.slice(j + 1);
  const raw = b64decode(keyB64);
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("verifier key is not an Ed25519 key (algorithm 1, 32 bytes)");
  if (!/^[0-9a-f]{8}$/.test(hashHex)) throw new Error("verifier key hash must be 8 hex digits");
  return { name, keyHash: hashHex, key: raw.slice(1), raw };
}

// keyID is SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[:4], as note defines it.
export async function keyID(name, raw) {
  const h = await sha256(concat(enc.encode(name + "\n"), raw));
  return h.slice(0, 4);
}

// ed25519Supported reports whether Web Crypto can verify Ed25519 here.
export async function ed25519Supported() {
  try {
    await crypto.subtle.importKey("raw", new Uint8Array(32).fill(1), { name: "Ed25519" }, false, ["verify"]);
    return true;
  } catch (e) {
    return false;
  }
}

// verifyNote checks the note's signature by the verifier key. It returns
// {status: "ok" | "unsupported" | "fail", detail}.
export async function verifyNote(noteText, vkey) {
  const k = parseVerifierKey(vkey);
  const id = await keyID(k.name, k.raw);
  if (hex(id) !== k.keyHash) return { status: "fail", detail: "the verifier key's hash does not match its name and key" };
  const { text, sigs } = parseNote(noteText);
  const sig = sigs.find((s) => s.name === k.name && equal(s.keyID, id));
  if (!sig) return { status: "fail", detail: "the checkpoint is not signed by key " + k.name + "+" + k.keyHash };
  if (!(await ed25519Supported())) return { status: "unsupported", detail: "this browser's Web Crypto has no Ed25519: signature not checked here (use trailguard prove)" };
  const pub = await crypto.subtle.importKey("raw", k.key, { name: "Ed25519" }, false, ["verify"]);
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, pub, sig.sig, enc.encode(text));
  return ok ? { status: "ok", detail: "Ed25519 signature by " + k.name + "+" + k.keyHash } : { status: "fail", detail: "the signature does not verify" };
}

// checkInclusion checks everything: record bytes (Uint8Array), the bundle
// as the API returns it (inclusion_proof), and the verifier key text. It
// returns {ok, steps: [{name, status, detail}]}, ok only if every step
// passed (a browser without Ed25519 gives ok with that step "unsupported").
export async function checkInclusion(record, bundle, vkey) {
  const steps = [];
  const step = (name, status, detail) => steps.push({ name, status, detail });
  try {
    const sig = await verifyNote(bundle.checkpoint, vkey);
    step("Checkpoint signature", sig.status, sig.detail);
    const cp = parseCheckpoint(parseNote(bundle.checkpoint).text);
    step("Checkpoint", "ok", cp.origin + ", tree size " + cp.size + ", root " + hex(cp.root).slice(0, 16) + "…");
    const leaf = await leafHash(record);
    const claimed = bundle.leaf_hash ? b64decode(bundle.leaf_hash) : null;
    step("Leaf hash", claimed && !equal(claimed, leaf) ? "fail" : "ok", "SHA-256(0x00 ‖ event) = " + hex(leaf).slice(0, 16) + "…" + (claimed && !equal(claimed, leaf) ? " (the server claimed another)" : ""));
    if (BigInt(bundle.tree_size) !== cp.size) {
      step("Tree size", "fail", "the proof is for size " + bundle.tree_size + ", the checkpoint says " + cp.size);
    }
    const proof = (bundle.proof || []).map(b64decode);
    const root = await rootFromInclusionProof(BigInt(bundle.index), cp.size, leaf, proof);
    const ok = equal(root, cp.root);
    step("Merkle path", ok ? "ok" : "fail", proof.length + " hashes from leaf " + bundle.index + " to " + (ok ? "the signed root" : "root " + hex(root).slice(0, 16) + "…, not the signed one"));
  } catch (e) {
    step("Proof", "fail", e.message);
  }
  return { ok: steps.every((s) => s.status !== "fail"), steps };
}
