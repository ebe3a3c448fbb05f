"""The status page in a real headless Chromium (Debian's chromium and chromium-driver, driven
by python3-selenium): open it, let its graphs run, read their series, save a screenshot.
Shared by the system test of the page and the four-guest e2e run."""

import time

from selenium import webdriver  # python3-selenium (DEPS_TEST): missing is a failure
from selenium.webdriver.chrome.service import Service


def chromium():
    """A headless Chromium driven by chromedriver (the caller quits it)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1300"):
        opts.add_argument(a)
    service = Service(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


# Every chart's datasets (label and values), or null before the page drew its charts.
SERIES = """
const c = window.entropydCharts;
if (!c || !c.sources) { return null; }
const out = {};
for (const k of Object.keys(c)) {
  out[k] = c[k].data.datasets.map((d) => ({label: d.label, data: d.data.slice()}));
}
return out;
"""


def watch_page(port, shot, seconds=6.0):
    """Load http://127.0.0.1:PORT/, let it update for `seconds`, save a screenshot to shot;
    returns (series, the page's error text)."""
    browser = chromium()
    try:
        browser.get("http://127.0.0.1:%d/" % port)
        time.sleep(seconds)
        series = browser.execute_script(SERIES)
        browser.save_screenshot(str(shot))
        print("status page screenshot: %s" % shot)
        return series, browser.find_element("id", "error").text
    finally:
        browser.quit()
