// End-to-end test of the pages of `moe-diffuseq serve` in headless Chromium (playwright-core, Debian's
// chromium): type a source on /, see the streamed steps (one row each) and the final text, equal to
// what the JSON API answers for the same request; then /run draws the run's curves. Screenshots go to
// ARTEFACTS. Run by tests/serve_page_e2e.sh: node serve_page.mjs URL ARTEFACTS.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [url, artefacts] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const steps = 6, seed = 2;
const source = "A command line tool to convert images between formats, resize and crop them.";

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  const failures = [];
  page.on("pageerror", (e) => failures.push(String(e)));

  await page.goto(url + "/");
  await page.waitForFunction(() => !document.getElementById("model").textContent.startsWith("loading"));
  assert.match(await page.textContent("#model"), /layers/);
  await page.fill("#src", source);
  await page.fill("#steps", String(steps));
  await page.fill("#seed", String(seed));
  await page.click("#go");
  await page.waitForSelector("#final", { state: "visible", timeout: 60000 });
  const rows = await page.$$eval("tr.step-row td.step", (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(rows, Array.from({ length: steps }, (_, k) => `step ${k + 1}/${steps}`));
  const shown = await page.textContent("#final");
  // The JSON API, same request without streaming: the same text.
  const answer = await (await fetch(url + "/v1/generate", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ src: source, steps, seed }),
  })).json();
  assert.equal(shown, answer.prediction);
  assert.match(await page.textContent("#status"), /^done in/);
  assert.doesNotMatch(await page.textContent("#status"), /longer than/);
  await page.screenshot({ path: `${artefacts}/serve_page.png`, fullPage: true });

  // A source longer than the model's data.max_src_len: the page says the model saw only part of it.
  await page.fill("#src", "packages ".repeat(300));
  await page.click("#go");
  // (The status still reads "done in" from the request before until this one ends.)
  await page.waitForFunction(() => /^done in .*longer than the model reads/.test(document.getElementById("status").textContent),
                             null, { timeout: 60000 });

  // Generates on the page and checks the streamed rows and that the final text is the API's answer
  // to `fields` (the page's own fields already filled in).
  const streamsAsTheApi = async (rows, fields) => {
    await page.click("#go");
    await page.waitForFunction((n) => document.querySelectorAll("tr.step-row").length === n &&
                                      /^done in/.test(document.getElementById("status").textContent),
                               rows.length, { timeout: 60000 });
    assert.deepEqual(await page.$$eval("tr.step-row td.step", (cells) => cells.map((c) => c.textContent)), rows);
    const answer = await (await fetch(url + "/v1/generate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ src: source, steps: 3, seed, ...fields }),
    })).json();
    assert.equal(await page.textContent("#final"), answer.prediction);
  };

  // Mask-predict rounds: each round is one more solve, streamed like the first (3 steps x 2 solves).
  await page.fill("#src", source);
  await page.fill("#steps", "3");
  await page.fill("#remask_rounds", "1");
  await streamsAsTheApi(Array.from({ length: 6 }, (_, k) => `step ${k + 1}/6`), { remask_rounds: 1 });
  await page.fill("#remask_rounds", "");

  // MBR with the source a candidate: two samples of 3 steps each (and no round left over from above).
  await page.fill("#mbr", "2");
  await page.selectOption("#mbr_source", "true");
  await streamsAsTheApi(["step 1/3", "step 2/3", "step 3/3", "step 1/3 (candidate 2)", "step 2/3 (candidate 2)",
                         "step 3/3 (candidate 2)"], { mbr: 2, mbr_source: true });
  await page.fill("#mbr", "");
  await page.selectOption("#mbr_source", "");

  // A bad request shows the server's error on the page.
  await page.fill("#steps", "100000");
  await page.click("#go");
  await page.waitForSelector("#status.error");
  assert.match(await page.textContent("#status"), /"steps" must be in/);

  await page.goto(url + "/run");
  await page.waitForSelector(".chart canvas", { timeout: 20000 });
  const titles = await page.$$eval(".chart .u-title", (t) => t.map((e) => e.textContent));
  for (const t of ["loss terms", "learning rate", "tokens per second"]) assert.ok(titles.includes(t), `no chart "${t}" in ${titles}`);
  assert.match(await page.textContent("#status"), /records, step \d+/);
  await page.screenshot({ path: `${artefacts}/serve_run_page.png`, fullPage: true });
  assert.deepEqual(failures, []);
  console.log(`serve_page: ${steps} streamed steps, final "${shown}"; charts: ${titles.join(", ")}`);
} finally {
  await browser.close();
}
