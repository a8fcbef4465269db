#!/usr/bin/env python3
"""Static checks of the web client (clients/web), no browser needed.

The daemon may serve the page under a strict Content-Security-Policy (script-src 'self',
style-src 'self', default-src 'none'), so: no inline scripts, event-handler attributes or style
attributes; every script, stylesheet and link is same-origin (relative) or a data: icon; the
script is an ES module; every element id the script looks up exists in the page; the script
parses (node --check, when node is installed)."""

import html.parser
import os
import re
import shutil
import subprocess
import sys


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()
        self.problems = []
        self.scripts = []
        self.styles = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            if a["id"] in self.ids:
                self.problems.append(f"duplicate id {a['id']}")
            self.ids.add(a["id"])
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"inline event handler {name} on <{tag}>")
            if name == "style":
                self.problems.append(f"inline style attribute on <{tag}>")
            if name in ("src", "href", "action") and value:
                if re.match(r"^[a-z][a-z0-9+.-]*:", value, re.I) and not value.startswith("data:image/"):
                    self.problems.append(f"<{tag} {name}={value!r}> is not same-origin")
        if tag == "script":
            self._in_script = True
            if not a.get("src"):
                self.problems.append("inline <script>")
            else:
                self.scripts.append(a)
        if tag == "style":
            self.problems.append("inline <style>")
        if tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(a.get("href"))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append("inline script text")


def main():
    root = sys.argv[1]
    passed = failed = 0

    def check(ok, what, detail=""):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {what}" + (f"  ({detail})" if detail else ""))

    for f in ("index.html", "app.js", "style.css"):
        check(os.path.isfile(os.path.join(root, f)), f"{f} exists")
    with open(os.path.join(root, "index.html"), encoding="utf-8") as f:
        page_text = f.read()
    page = Page()
    page.feed(page_text)
    check(not page.problems, "no inline scripts, handlers, styles or foreign URLs",
          "; ".join(page.problems))
    check(any(s.get("src") == "app.js" and s.get("type") == "module" for s in page.scripts),
          "app.js loaded as an ES module")
    check("style.css" in page.styles, "style.css linked")
    check('name="viewport"' in page_text, "has a viewport meta tag (responsive)")

    with open(os.path.join(root, "app.js"), encoding="utf-8") as f:
        js = f.read()
    wanted = set(re.findall(r"\$\('([A-Za-z0-9_-]+)'\)", js))
    wanted |= set(re.findall(r"getElementById\('([A-Za-z0-9_-]+)'\)", js))
    missing = sorted(wanted - page.ids)
    check(wanted and not missing, "every id the script uses exists", ", ".join(missing))
    check(not re.search(r"\beval\(|new Function\(", js), "no eval")
    check("'flipbook.v1'" in js, "connects with subprotocol flipbook.v1")
    check("vp09.00.31.08" in js and "optimizeForLatency: true" in js, "VP9 decoder config")
    check("getUint32(4, true)" in js and "getBigInt64(8, true)" in js,
          "frame header read little-endian")
    check(re.search(r"\.close\(\)", js) is not None and "requestAnimationFrame" in js,
          "frames painted on rAF and closed")
    check("window.flipbookStats" in js, "test hook window.flipbookStats")
    check("type: 'info'" in js and "case 'server':" in js,
          "asks what the server serves (info -> server)")
    check(re.search(r"format: 'rgba32'", js) is not None and "partChars" in js,
          "anchor images sent as rgba32 in parts")
    check(not re.search(r"https?://(?!localhost)", js.replace("http://localhost:", "")),
          "no absolute URLs to other hosts")

    node = shutil.which("node")
    if node:
        r = subprocess.run([node, "--check", os.path.join(root, "app.js")], capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 0, "app.js parses (node --check)", r.stderr.strip()[:300])
    else:
        print("note: node not installed; syntax check skipped")
    print(f"browser_web_static: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
