// Package ui is the collector's web interface: an overview of the trail,
// search, request traces, alerts, block decisions, integrity and reports,
// served by `trailguard serve` at /ui/.
//
// Everything the browser loads is embedded in the binary (go:embed): plain
// HTML, CSS and JavaScript modules of our own, charts drawn as SVG by our
// own code, nothing fetched from elsewhere at run time. The pages call the
// collector's read API through /ui/api/ with a session cookie (see
// Sessions); the server side of that lives in package server.
//
// Logged values are attacker-controlled (user agents, paths, user names),
// so the pages build the DOM with textContent and never parse data as
// markup, and every answer carries a strict Content-Security-Policy that
// allows only this package's own scripts and styles, no eval, no inline
// code, and, in browsers that enforce Trusted Types, no string reaching
// an HTML sink at all.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// Assets is the embedded file tree (index.html, app.css, js/…), for tests
// and for tools that inspect what is served.
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Prefix is where the UI is served.
const Prefix = "/ui/"

// CSPReportPath receives the browser's Content-Security-Policy violation
// reports (see Handler's ReportCSP).
const CSPReportPath = "/ui/csp-report"

// ContentSecurityPolicy is sent with every page and asset: only our own
// scripts, styles and images; connections only back to the collector; no
// plugins, no framing, no base-URI tricks, no form posts elsewhere; and
// Trusted Types required for every DOM sink that parses HTML or script, with
// no policy allowed to create them (so innerHTML = "…" throws in Chromium
// instead of parsing). There is no 'unsafe-inline' and no 'unsafe-eval'.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'; report-uri " + CSPReportPath

// SetSecurityHeaders sets the headers every UI answer carries, API answers
// included.
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

// pages are the UI's routes: each is answered with index.html, so that a
// shared or reloaded URL (/ui/search?q=…) opens the page it names.
var pages = map[string]bool{
	"": true, "overview": true, "search": true, "trace": true, "event": true, "alerts": true,
	"blocks": true, "integrity": true, "reports": true, "signin": true,
}

// Handler serves the embedded UI below Prefix: assets with their content
// types and validators, page routes with index.html, anything else 404.
// Every answer carries SetSecurityHeaders.
func Handler() http.Handler { return newHandler(Assets()) }

func newHandler(fsys fs.FS) *handler {
	h := &handler{fsys: fsys, started: time.Now()}
	// The version names the assets' contents: index.html loads its
	// stylesheet and modules below VersionedPrefix/<version>/, where they
	// are cached for good (a new build has a new version, and index.html is
	// always revalidated). The modules import one another by relative
	// paths, so they all resolve below the same version. Without this, every
	// navigation revalidated ~20 files, a round trip each over the browser's
	// six connections: ~150 ms of a page's time on a loaded machine.
	sum := sha256.New()
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(sum, "%s %d\n", p, len(data))
		sum.Write(data)
		return nil
	})
	h.version = hex.EncodeToString(sum.Sum(nil)[:8])
	index, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		panic(err) // embedded at build time
	}
	base := VersionedPrefix + h.version + "/"
	index = bytes.ReplaceAll(index, []byte(`"`+Prefix+`js/`), []byte(`"`+base+`js/`))
	h.index = bytes.ReplaceAll(index, []byte(`"`+Prefix+`app.css"`), []byte(`"`+base+`app.css"`))
	return h
}

// VersionedPrefix is where the assets are served under their version,
// cached by browsers without revalidation.
const VersionedPrefix = Prefix + "v/"

type handler struct {
	fsys    fs.FS
	started time.Time
	version string // of the embedded assets
	index   []byte // index.html naming the versioned assets
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SetSecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, Prefix)
	if r.URL.Path+"/" == Prefix {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	name := rel
	if pages[strings.TrimSuffix(rel, "/")] {
		name = "index.html"
	}
	// Nothing else is cached without revalidation: an upgraded collector
	// must never run old scripts against its new API (ETags make it cheap).
	cache := "no-cache"
	if v, ok := strings.CutPrefix(r.URL.Path, VersionedPrefix); ok {
		ver, file, _ := strings.Cut(v, "/")
		name = file
		if ver == h.version {
			cache = "public, max-age=31536000, immutable"
		}
		// Another version (a page loaded before an upgrade): today's
		// file, revalidated.
	}
	w.Header().Set("Cache-Control", cache)
	if name == "" || strings.HasSuffix(name, "/") || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(h.fsys, name)
	if name == "index.html" {
		data = h.index
	}
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".js":
		ctype = "text/javascript; charset=utf-8"
	case ".css":
		ctype = "text/css; charset=utf-8"
	case ".html":
		ctype = "text/html; charset=utf-8"
	case ".svg":
		ctype = "image/svg+xml"
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	http.ServeContent(w, r, name, h.started, bytes.NewReader(data))
}

// WantsHTML reports whether a request comes from a browser navigating to a
// page (Accept names text/html) rather than from an API client: GET / is
// both the UI's entry and Elasticsearch's info endpoint, which clients and
// shippers probe with Accept: application/json (or nothing).
func WantsHTML(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
			return true
		}
	}
	return false
}
