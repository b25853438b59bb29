#!/usr/bin/env python3
"""Renders a care_report.html in headless Chromium and checks it.

Usage: check_report_page.py REPORT_HTML REPORT_JSON ARTIFACT_DIR

The report itself has no script. A copy of it gets a probe script injected
first in <head>; Chromium loads that copy (--dump-dom) and the probe writes
what it measured into the DOM: errors and failed loads seen while loading,
resources fetched (a self-contained page fetches none), and per chart the
number of bars and lines with their rendered sizes. The checks:

- no error event, no console.error, no resource fetched;
- latent layout: ranks, errors and energy charts: one bar per layer for K
  and one for V, each with a rendered width and height > 0 (the JSON's
  layers); spectra: one line per layer; candidates: one bar per candidate;
- deepseek_v3 layout: errors (K and V), joint retained energy, RoPE energy
  and (with the NoPE correction) NoPE score error dropped/corrected: one
  bar per layer and series; the loss of each step: 3 bars (original,
  partial RoPE only, converted); one bar per rope/freqfold candidate;
- nothing is wider than the page: no horizontal scrolling at 1100 px
  (scrollWidth <= clientWidth) and no element's box reaches past the
  window's right edge.

Artifacts in ARTIFACT_DIR: care_report.png (a screenshot of the page as
shipped, not the probe copy) and care_report.pdf (printed).
Exit 0 when every check passes, 1 otherwise, 77 (skip) when no Chromium is
installed and CARE_REQUIRE_FIXTURES is not 1.
"""
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

PROBE = r"""<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target || {};
    errors.push('error: ' + (e.message || (t.tagName + ' ' + (t.src || t.href || ''))));
  }, true);
  var ce = console.error;
  console.error = function () { errors.push('console.error: ' +
      Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); };
  window.addEventListener('load', function () {
    var charts = {};
    document.querySelectorAll('svg.chart').forEach(function (svg) {
      var bars = svg.querySelectorAll('rect.bar'), lines = svg.querySelectorAll('path.line');
      var c = {bars: bars.length, lines: lines.length, empty_bars: 0, series: {},
               width: svg.getBoundingClientRect().width};
      bars.forEach(function (b) {
        var r = b.getBoundingClientRect();
        if (!(r.width > 0 && r.height > 0)) c.empty_bars++;
        var s = b.getAttribute('data-series');
        c.series[s] = (c.series[s] || 0) + 1;
      });
      charts[svg.getAttribute('data-chart')] = c;
    });
    // Every element's right edge: nothing may stick out of the page, even
    // where an ancestor clips it.
    var vw = document.documentElement.clientWidth, wide = [], maxRight = 0;
    document.querySelectorAll('body *').forEach(function (e) {
      var r = e.getBoundingClientRect();
      maxRight = Math.max(maxRight, r.right);
      if (r.right > vw + 0.5 && wide.length < 8) {
        wide.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                  (typeof e.className === 'string' && e.className ?
                   '.' + e.className : '') + ' right=' + Math.round(r.right) +
                  ' width=' + Math.round(r.width));
      }
    });
    var out = {errors: errors, charts: charts, max_right: maxRight, too_wide: wide,
               resources: performance.getEntriesByType('resource').map(function (r) { return r.name; }),
               scroll_width: document.documentElement.scrollWidth,
               scroll_height: document.documentElement.scrollHeight,
               client_width: document.documentElement.clientWidth,
               title: document.title};
    var pre = document.createElement('pre');
    pre.id = 'care-probe';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();
</script>"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main():
    page, report_json, artifacts = map(pathlib.Path, sys.argv[1:4])
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CARE_REQUIRE_FIXTURES") == "1":
            print("FAIL: no chromium (scripts/install-deps.sh installs it)")
            return 1
        print("SKIP: no chromium installed")
        return 77
    artifacts.mkdir(parents=True, exist_ok=True)
    report = json.loads(report_json.read_text())
    layers = len(report["layers"])
    candidates = len(report.get("candidates", []))
    text = page.read_text()

    work = pathlib.Path(tempfile.mkdtemp(prefix="care-report-browser."))
    try:
        probe = work / "probe.html"
        probe.write_text(text.replace("<head>", "<head>" + PROBE, 1))
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-quic", "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--window-size=1100,900"]

        def run(extra, url, profile):
            return subprocess.run(
                base + [f"--user-data-dir={work / profile}"] + extra + [url],
                capture_output=True, text=True, timeout=120)

        dom = run(["--dump-dom", "--virtual-time-budget=5000"],
                  probe.as_uri(), "p1")
        m = re.search(r'<pre id="care-probe">(.*?)</pre>', dom.stdout, re.S)
        if not m:
            print("FAIL: the probe wrote nothing; chromium said:")
            print(dom.stderr[-3000:])
            return 1
        result = json.loads(html.unescape(m.group(1)))
        (artifacts / "probe.json").write_text(json.dumps(result, indent=2))

        # The page as shipped: screenshot (the whole page, as tall as the
        # probe measured it) and print.
        shot = artifacts / "care_report.png"
        pdf = artifacts / "care_report.pdf"
        height = min(max(int(result.get("scroll_height", 0)), 900), 16000)
        run([f"--screenshot={shot}", f"--window-size=1100,{height}"],
            page.resolve().as_uri(), "p2")
        run([f"--print-to-pdf={pdf}", "--no-pdf-header-footer"],
            page.resolve().as_uri(), "p3")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    problems = []
    if result["errors"]:
        problems.append(f"errors while loading: {result['errors']}")
    if result["resources"]:
        problems.append(f"fetched resources: {result['resources']}")
    charts = result["charts"]

    def bars_per_series(name, want):
        c = charts.get(name)
        if c is None:
            problems.append(f"no {name} chart")
            return
        if c["series"] != want:
            problems.append(f"{name}: bars per series {c['series']}, "
                            f"want {want}")
        if c["empty_bars"]:
            problems.append(f"{name}: {c['empty_bars']} bars not rendered")

    layout = report.get("layout", "latent")
    if layout == "deepseek_v3":
        d = report["deepseek_v3"]
        candidates = len(d["candidates"])
        bars_per_series("errors", {"K": layers, "V": layers})
        bars_per_series("energy", {"K_nope+V": layers})
        bars_per_series("rope_energy", {"RoPE": layers})
        if d["nope_correction"]:
            bars_per_series("nope_error",
                            {"dropped": layers, "corrected": layers})
        if charts.get("steps", {}).get("bars") != 3:
            problems.append(f"steps chart: {charts.get('steps')}, want 3 bars")
        if charts.get("mla_candidates", {}).get("bars") != candidates:
            problems.append(f"mla_candidates chart: "
                            f"{charts.get('mla_candidates')}, "
                            f"want {candidates} bars")
        if "ranks" in charts:
            problems.append("a ranks chart for one joint latent")
    else:
        for name in ("ranks", "errors", "energy"):
            bars_per_series(name, {"K": layers, "V": layers})
        for name in ("spectrum_k", "spectrum_v"):
            if charts.get(name, {}).get("lines") != layers:
                problems.append(
                    f"{name}: {charts.get(name)} lines, want {layers}")
        if candidates and charts.get("candidates",
                                     {}).get("bars") != candidates:
            problems.append(f"candidates chart: {charts.get('candidates')}, "
                            f"want {candidates} bars")
    if result["scroll_width"] > result["client_width"]:
        problems.append(f"page wider than the window: {result['scroll_width']}"
                        f" > {result['client_width']}")
    if result["max_right"] > result["client_width"] + 0.5 or result["too_wide"]:
        problems.append(f"elements past the page's right edge "
                        f"({result['client_width']} px): {result['too_wide']}")
    for path in (shot, pdf):
        if not path.exists() or path.stat().st_size < 10000:
            problems.append(f"{path.name} missing or tiny")
    for p in problems:
        print("FAIL:", p)
    if problems:
        return 1
    print(f"report page ok ({layout}): {layers} layers, "
          f"{candidates} candidates, scroll width {result['scroll_width']} / "
          f"{result['client_width']} px, {len(charts)} charts; "
          f"screenshot {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
