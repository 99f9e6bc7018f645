"""Open a report in headless Chromium (Playwright, system chromium) 3 times; print load times, images,
console errors and non-file requests. Usage: python scripts/report_load_time.py reports/RUN.html"""
import statistics
import sys
import time

from playwright.sync_api import sync_playwright

path = str(__import__("pathlib").Path(sys.argv[1]).resolve())
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    times, errors, requests = [], [], []
    for _ in range(3):
        page = b.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        t = time.perf_counter(); page.goto("file://" + path, wait_until="load"); times.append(time.perf_counter() - t)
        n_img = page.evaluate("document.images.length")
        bad = page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).length")
        page.close()
    b.close()
print(f"load s: {[round(x,3) for x in times]} median {statistics.median(times):.3f}; images {n_img}, undecoded {bad}; console errors {len(errors)}; non-file requests {[u for u in requests if not u.startswith('file:')][:3]}")
