// @ts-check
// End-to-end test of a test's JUnit cases in the console (issue 15): a
// real runner runs a file that writes a 10,000-case report, and headless
// Chromium shows the counts, the failed cases first with their ANSI message
// rendered, scrolls the virtualised list to its end, and filters by name.
// Prerequisites as for console.test.mjs (dist/, binaries, Chromium).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launchBrowser, missingPrerequisite, startStack } from './harness.mjs';

const CASES = 10_000;
const FAILED = 3;

// Writes the report itself (no framework needed): FAILED cases first in the
// file are not required; the coordinator orders them.
const REPORT_WRITER = `
import os
n, failed = ${CASES}, ${FAILED}
with open(os.environ["TESTRUNNER_JUNIT_XML"], "w") as f:
    f.write('<?xml version="1.0"?>\\n<testsuite name="many">\\n')
    for i in range(n):
        name = "case_%05d" % i
        if i >= n - failed:
            f.write('<testcase classname="many.Big" name="%s" time="0.001">'
                    '<failure message="&#27;[31mAssertionError&#27;[0m: value %d">trace of %d</failure></testcase>\\n' % (name, i, i))
        else:
            f.write('<testcase classname="many.Big" name="%s" time="0.001"/>\\n' % name)
    f.write('</testsuite>\\n')
raise SystemExit(1)
`;

/** @type {string} */ let tmp;
/** @type {Awaited<ReturnType<typeof startStack>> | undefined} */ let stack;
/** @type {import('playwright-core').BrowserContext | undefined} */ let browser;
let failed = false;

before(async () => {
  const missing = missingPrerequisite();
  assert.equal(missing, undefined, missing);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'testrunner-e2e-cases-'));
  stack = await startStack({ tmp, runners: ['e2e-cases'], slots: 1 });
  browser = await launchBrowser(path.join(tmp, 'profile'));
});

after(async () => {
  await browser?.close().catch(() => {});
  await stack?.stop();
  if (failed) {
    await stack?.dumpLogs();
    console.error(`\nkept for inspection: ${tmp}`);
  } else if (tmp !== undefined) {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('a test of 10,000 cases shows its failed cases first and scrolls and filters them', { timeout: 180_000 }, async () => {
  assert.ok(browser && stack);
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  try {
    const base = stack.baseUrl;
    await page.goto(`${base}/new`);
    await page.getByTestId('username').fill('e2e-cases');
    await page
      .getByTestId('file-input')
      .setInputFiles([{ name: 'many.py', mimeType: 'text/plain', buffer: Buffer.from(REPORT_WRITER) }]);
    await page.getByTestId('file-list').getByText('many.py', { exact: true }).waitFor();
    await page.getByTestId('submit').click();
    await page.waitForURL(/\/testruns\/\d+/);
    await page.locator('[data-testid="testrun-status"][data-status="FAILED"]').waitFor({ timeout: 60_000 });

    const row = page.locator('[data-testid="test-row"][data-name="many.py"]');
    const counts = row.getByTestId('case-counts');
    await counts.waitFor();
    assert.equal(await counts.getAttribute('data-total'), String(CASES));
    assert.equal(await counts.getAttribute('data-failed'), String(FAILED));
    await row.click();

    const panel = page.getByTestId('cases-panel');
    await page.locator(`[data-testid="cases-panel"][data-loading="false"][data-loaded="${CASES}"]`).waitFor({ timeout: 60_000 });
    const rows = page.getByTestId('case-row');
    const drawn = await rows.count();
    assert.ok(drawn < 100, `virtualised: ${drawn} rows drawn for ${CASES} cases`);
    // Failed first, then by name.
    for (let i = 0; i < FAILED; i++) assert.equal(await rows.nth(i).getAttribute('data-status'), 'FAILED');
    assert.equal(await rows.nth(FAILED).getAttribute('data-name'), 'case_00000');

    // The message, ANSI colours rendered (no escape characters left).
    await rows.first().getByRole('button').click();
    const detail = page.getByTestId('case-detail');
    await detail.waitFor();
    const text = (await detail.textContent()) ?? '';
    assert.match(text, /AssertionError: value 9997/);
    assert.ok(!text.includes('\u001b'), `escape codes rendered, not shown: ${JSON.stringify(text)}`);
    const red = detail.getByText('AssertionError', { exact: true });
    assert.notEqual(await red.evaluate((el) => getComputedStyle(el).color), await detail.evaluate((el) => getComputedStyle(el).color));

    // Scrolls smoothly to the very end: the last case is drawn there.
    const list = page.getByTestId('case-list');
    await list.evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await page.locator('[data-testid="case-row"][data-name="case_09996"]').waitFor();
    assert.ok((await rows.count()) < 100);

    // Filter by name.
    await panel.getByTestId('case-name').fill('case_0000');
    await page.locator('[data-testid="cases-panel"][data-loading="false"][data-loaded="10"]').waitFor({ timeout: 30_000 });
    assert.equal(await rows.count(), 10);
  } catch (err) {
    failed = true;
    await page.screenshot({ path: path.join(tmp, 'failure-cases.png'), fullPage: true }).catch(() => {});
    throw err;
  }
});
