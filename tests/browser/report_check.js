// Drive report.html in Debian's chromium and print what the page shows, as JSON.
//
//   node report_check.js CONFIG.json
//
// CONFIG: {"html": "/abs/report.html", "search": "term", "hostile": "term or null",
//          "screenshot": "/abs/out.png or null", "bigPages": false, "control": false}
// tests/test_report_browser.py compares the printed observations with the run's files;
// this script only observes (it asserts nothing), so every verdict lives in pytest.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { pathToFileURL } = require("url");
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CLEARAPI_CHROMIUM || "/usr/bin/chromium";
// Without the background-networking flags the closed network here refuses chromium's own
// connections and startup stalls.
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

async function texts(page, selector) {
  return page.$$eval(selector, (els) => els.map((e) => e.textContent));
}

async function visibleColumn(page, key) {
  // The values of one column for the rows on the current page, read from the DOM.
  return page.evaluate((key) => {
    const ths = Array.from(document.querySelectorAll("#rows-head th"));
    const col = ths.findIndex((th) => th.dataset.key === key);
    return Array.from(document.querySelectorAll("#rows-body tr[data-i]")).map((tr) => tr.children[col].textContent);
  }, key);
}

async function sortBy(page, key) {
  await page.click(`#rows-head th[data-key="${key}"] button`);
  return {
    ariaSort: await page.getAttribute(`#rows-head th[data-key="${key}"]`, "aria-sort"),
    values: await visibleColumn(page, key),
    lines: await page.$$eval("#rows-body tr[data-i]", (trs) => trs.map((tr) => Number(tr.dataset.line))),
  };
}

async function search(page, term) {
  await page.fill("#search", term);
  await page.press("#search", "Enter");
  return {
    term,
    lines: await page.$$eval("#rows-body tr[data-i]", (trs) => trs.map((tr) => Number(tr.dataset.line))),
    count: await page.textContent("#row-count"),
    pageInfo: await page.textContent("#page-info"),
  };
}

async function clearSearch(page) {
  await page.fill("#search", "");
  await page.press("#search", "Enter");
}

async function detailOf(page) {
  return page.evaluate(() => {
    const d = document.getElementById("detail");
    const q = (id) => document.getElementById(id);
    return {
      visible: !d.hidden && d.getBoundingClientRect().height > 0,
      title: q("detail-title").textContent,
      prompt: q("detail-prompt").textContent,
      original: q("detail-original").textContent,
      correction: q("detail-correction").textContent,
      correctionTitle: q("detail-correction-title").textContent,
      deleted: Array.from(q("detail-original").querySelectorAll("del")).map((e) => e.textContent),
      inserted: Array.from(q("detail-correction").querySelectorAll("ins")).map((e) => e.textContent),
      panesSideBySide: (() => {
        const panes = Array.from(document.querySelectorAll("#detail .pane")).map((p) => p.getBoundingClientRect());
        return panes.length === 3 && panes[0].top === panes[2].top && panes[0].right <= panes[1].left;
      })(),
      facts: Array.from(document.querySelectorAll("#detail-facts dt")).map((dt) => [dt.textContent, dt.nextElementSibling.textContent]),
      hash: location.hash,
    };
  });
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "clearapi-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: FLAGS,
    viewport: { width: config.width || 1360, height: config.height || 900 },
  });
  const out = { dialogs: [], pageErrors: [], consoleErrors: [], requests: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("dialog", async (dialog) => { out.dialogs.push(dialog.message()); await dialog.dismiss(); });
    page.on("pageerror", (err) => out.pageErrors.push(String(err)));
    page.on("console", (msg) => { if (msg.type() === "error") out.consoleErrors.push(msg.text()); });
    page.on("request", (req) => out.requests.push(req.url()));

    const url = pathToFileURL(config.html).href;
    const t0 = Date.now();
    await page.goto(url, { waitUntil: "load" });
    if (config.control) {
      // A page that is NOT escaped: proves this browser would report an injection.
      await page.waitForFunction(() => typeof window.__pwned !== "undefined", null, { timeout: 10000 }).catch(() => {});
      out.pwned = await page.evaluate(() => (typeof window.__pwned === "undefined" ? null : String(window.__pwned)));
      return;
    }
    await page.waitForSelector("body[data-ready='1']", { timeout: 60000 });
    out.loadMs = Date.now() - t0;
    out.title = await page.title();

    if (config.screenshot) {
      // The picture for the README: headline, charts, table and one correction opened.
      await page.selectOption("#page-size", "25");
      // Open a correction if the run made one, else a dropped row (it shows the model's own answer).
      const rows = await page.$$("#rows-body tr[data-i]");
      const actions = [];
      for (const tr of rows) actions.push(await tr.$eval("td.act", (td) => td.textContent));
      const pick = actions.indexOf("correct") >= 0 ? actions.indexOf("correct") : actions.indexOf("drop");
      if (pick >= 0) await rows[pick].click();
      await page.evaluate(() => window.scrollTo(0, 0));
      // Crop a few rows below the opened one: enough to show the table, short enough for a README.
      const bottom = await page.evaluate(() => {
        const rows = Array.from(document.querySelectorAll("#rows-body tr"));
        const open = rows.findIndex((tr) => tr.classList.contains("detail-row"));
        const last = open < 0 ? document.getElementById("rows") : rows[Math.min(rows.length - 1, open + 6)];
        return last.getBoundingClientRect().bottom + window.scrollY + 8;
      });
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      await page.screenshot({ path: config.screenshot, fullPage: true,
                              clip: { x: 0, y: 0, width, height: Math.ceil(bottom) + 16 } });
      out.screenshot = config.screenshot;
      return;
    }

    out.stats = await page.$$eval(".stat", (els) => els.map((e) => ({
      id: e.id, value: e.dataset.value === undefined ? null : Number(e.dataset.value),
      text: e.querySelector(".v").textContent,
    })));
    out.histogram = await page.evaluate(() => {
      const svg = document.getElementById("confidence-histogram");
      if (!svg) return null;
      const line = svg.querySelector(".threshold-line");
      const box = svg.getBoundingClientRect();
      return {
        bars: svg.querySelectorAll("rect.bar").length,
        barClasses: Array.from(new Set(Array.from(svg.querySelectorAll("rect.bar")).map((r) => r.getAttribute("class")))),
        threshold: line ? Number(line.closest("g").dataset.threshold) : null,
        thresholdX: line ? Number(line.getAttribute("x1")) : null,
        rendered: box.width > 0 && box.height > 0,
        signalCharts: document.querySelectorAll("svg[id^='signal-histogram-']").length,
      };
    });
    out.initial = {
      rows: await page.$$eval("#rows-body tr[data-i]", (trs) => trs.length),
      count: await page.textContent("#row-count"),
      headers: await page.$$eval("#rows-head th", (ths) => ths.map((th) => th.dataset.key)),
    };
    out.sortAsc = await sortBy(page, "conf");
    out.sortDesc = await sortBy(page, "conf");
    await sortBy(page, "line");
    out.search = await search(page, config.search);
    await clearSearch(page);

    // Open the first corrected row through the action filter and a click, like a user would.
    await page.selectOption("#action-filter", "1");
    out.correctedLines = await page.$$eval("#rows-body tr[data-i]", (trs) => trs.map((tr) => Number(tr.dataset.line)));
    const row = await page.$("#rows-body tr[data-i]");
    if (row) {
      await row.click();
      out.detail = await detailOf(page);
      out.detail.line = out.correctedLines[0];
      await page.keyboard.press("Escape");
      out.detailClosed = await page.$eval("#detail", (d) => d.hidden);
    }
    // A dropped row: the model's own answer is shown, marked as not applied.
    await page.selectOption("#action-filter", "2");
    const dropped = await page.$("#rows-body tr[data-i]");
    if (dropped) {
      await dropped.click();
      out.droppedDetail = await detailOf(page);
      out.droppedDetail.line = Number(await dropped.getAttribute("data-line"));
    }
    await page.selectOption("#action-filter", "");

    // Clicking a histogram bar lists that bin's rows.
    const bins = await page.$$("#confidence-histogram g.bin");
    if (bins.length > 2) {
      await page.click("#confidence-histogram g.bin:nth-of-type(3) rect.hit", { force: true });
      out.binClick = {
        lo: Number(await bins[2].getAttribute("data-lo")), hi: Number(await bins[2].getAttribute("data-hi")),
        lines: await page.$$eval("#rows-body tr[data-i]", (trs) => trs.map((tr) => Number(tr.dataset.line))),
        chip: await page.textContent("#range-chip"),
      };
      await page.click("#range-chip");
      out.binCleared = await page.textContent("#row-count");
    }

    if (config.bigPages) {
      const t1 = Date.now();
      await page.click("#next");
      out.nextPageMs = Date.now() - t1;
      out.pageInfo = await page.textContent("#page-info");
      const t2 = Date.now();
      await search(page, config.search);
      out.searchMs = Date.now() - t2;
      await clearSearch(page);
      const t3 = Date.now();
      await sortBy(page, "conf");
      out.sortMs = Date.now() - t3;
    }

    if (config.hostile) {
      out.hostileSearch = await search(page, config.hostile);
      const hostileRow = await page.$("#rows-body tr[data-i]");
      out.hostileCells = hostileRow ? await hostileRow.$$eval("td", (tds) => tds.map((td) => td.textContent)) : null;
      if (hostileRow) {
        await hostileRow.click();
        out.hostileDetail = await detailOf(page);
      }
      out.rejectCells = await texts(page, "#rejects-table td");
    }
    out.pwned = await page.evaluate(() => (typeof window.__pwned === "undefined" ? null : String(window.__pwned)));
    out.injectedElements = await page.evaluate(() => ({
      img: document.querySelectorAll("img").length,
      pwnId: document.querySelectorAll("#pwn").length,
      scripts: document.querySelectorAll("script").length,
      bold: document.querySelectorAll("body b:not(figcaption b)").length,
    }));
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.stdout.write(JSON.stringify(out) + "\n");
  }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
