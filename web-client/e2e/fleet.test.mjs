// @ts-check
// End-to-end tests of the console's scheduling and fleet pages against the
// real coordinator and runners, in headless Chromium: a flaky test (fails,
// then passes on its retry) shows FLAKY with two attempts; "Rerun failed"
// creates a Testrun of only the failed tests; a suite page lists its tests;
// a selector no runner matches says why the tests wait; the runners page
// lists the harness's runners and drains one.
//
// Needs what e2e/console.test.mjs needs (dist/, the binaries, Chromium).

import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { launchBrowser, missingPrerequisite, screenshottingTest, startStack } from './harness.mjs';

const FINISH_MS = 60_000;
const RUNNERS = ['e2e-r1', 'e2e-r2'];

/** @type {string} */ let tmp;
/** @type {string} */ let baseUrl;
/** @type {Awaited<ReturnType<typeof startStack>> | undefined} */ let stack;
/** @type {import('playwright-core').BrowserContext | undefined} */ let browser;
/** @type {import('playwright-core').Page} */ let page;
let failures = 0;

const e2e = screenshottingTest({
  timeout: 150_000,
  page: () => page,
  dir: () => tmp,
  failed: () => {
    failures++;
  },
});

/**
 * Creates a Testrun through the /new form and resolves to its id once the
 * console shows it.
 * @param {import('playwright-core').Page} p
 * @param {string} username
 * @param {{name: string, content: string}[]} files
 * @param {{suite?: string, retries?: number, selector?: string}} options
 */
async function createThroughForm(p, username, files, options = {}) {
  await p.goto(`${baseUrl}/new`);
  await p.getByTestId('username').fill(username);
  await p.getByTestId('file-input').setInputFiles(
    files.map((f) => ({ name: f.name, mimeType: 'text/plain', buffer: Buffer.from(f.content) })),
  );
  for (const f of files) await p.getByTestId('file-list').getByText(f.name, { exact: true }).waitFor();
  if (options.suite !== undefined) await p.getByTestId('suite').fill(options.suite);
  if (options.retries !== undefined) {
    await p.getByTestId('retries').click();
    await p.getByTestId(`retries-${options.retries}`).click();
  }
  if (options.selector !== undefined) await p.getByTestId('selector').fill(options.selector);
  await p.getByTestId('submit').click();
  await p.waitForURL(/\/testruns\/\d+/);
  const id = /\/testruns\/(\d+)/.exec(p.url())?.[1];
  assert.ok(id, `no Testrun id in ${p.url()}`);
  return id;
}

/** @param {import('playwright-core').Page} p @param {string} status */
async function waitForRunStatus(p, status, timeout = FINISH_MS) {
  await p.locator(`[data-testid="testrun-status"][data-status="${status}"]`).waitFor({ timeout });
}

/** @param {import('playwright-core').Page} p @param {string} name */
function testRow(p, name) {
  return p.locator(`[data-testid="test-row"][data-name="${name}"]`);
}

before(async () => {
  const missing = missingPrerequisite();
  assert.equal(missing, undefined, missing);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'testrunner-e2e-fleet-'));
  // Tests may run as another user than this one: they share marker files here.
  await chmod(tmp, 0o777);
  stack = await startStack({ tmp, runners: RUNNERS });
  baseUrl = stack.baseUrl;
  browser = await launchBrowser(path.join(tmp, 'profile'));
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
});

after(async () => {
  await browser?.close().catch(() => {});
  await stack?.stop();
  if (failures > 0) {
    await stack?.dumpLogs();
    console.error(`\nkept for inspection: ${tmp}`);
  } else if (tmp !== undefined) {
    await rm(tmp, { recursive: true, force: true });
  }
});

e2e('a test that fails and then passes on its retry shows FLAKY with two attempts', async () => {
  const marker = path.join(tmp, 'flaky-ran-once');
  const flaky = `if [ -e '${marker}' ]; then echo 'second try passes'; exit 0; fi\ntouch '${marker}'\necho 'first try fails'\nexit 1\n`;
  await createThroughForm(page, 'e2e-flaky', [{ name: 'flaky.sh', content: flaky }, { name: 'steady.sh', content: 'echo steady\n' }], {
    suite: 'e2e-fleet',
    retries: 1,
  });
  await page.getByTestId('testrun-status').waitFor();
  assert.equal((await page.getByTestId('retries').textContent())?.trim(), '1', 'the Testrun keeps its retries');
  await waitForRunStatus(page, 'SUCCESS');
  const row = testRow(page, 'flaky.sh');
  await row.and(page.locator('[data-status="FLAKY"]')).waitFor();
  assert.equal((await page.getByTestId('flaky-count').first().textContent())?.trim(), '1 flaky');
  await row.click();
  const attempts = page.getByTestId('attempt-row');
  await attempts.nth(1).waitFor();
  assert.deepEqual(await attempts.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-status'))), ['FAILED', 'PASSED']);
  // The first attempt's lines only, then the second's.
  await attempts.nth(0).click();
  await page.getByTestId('log-view').getByText('first try fails', { exact: true }).waitFor();
  assert.equal(await page.getByTestId('log-view').getByText('second try passes').count(), 0);
  await attempts.nth(1).click();
  await page.getByTestId('log-view').getByText('second try passes', { exact: true }).waitFor();
  assert.equal(await page.getByTestId('log-view').getByText('first try fails').count(), 0);
  // Opened afresh, the page skips the stored log and learns the attempts' lines from it on demand.
  await page.reload();
  await testRow(page, 'flaky.sh').click();
  await page.getByTestId('attempt-row').nth(0).click();
  await page.getByTestId('log-view').getByText('first try fails', { exact: true }).waitFor();
  assert.equal(await page.getByTestId('log-view').getByText('second try passes').count(), 0);
});

e2e('"Rerun failed" creates a Testrun with only the failed tests, linked back', async () => {
  const first = await createThroughForm(page, 'e2e-rerun', [
    { name: 'pass.sh', content: 'echo fine\n' },
    { name: 'fail.sh', content: 'echo broken\nexit 2\n' },
  ], { suite: 'e2e-fleet' });
  await waitForRunStatus(page, 'FAILED');
  await page.getByTestId('rerun-failed').click();
  await page.waitForURL((url) => /\/testruns\/\d+/.test(url.pathname) && !url.pathname.endsWith(`/testruns/${first}`));
  await page.getByTestId('rerun-of').waitFor();
  assert.equal(await page.getByTestId('rerun-of').getAttribute('href'), `/testruns/${first}`);
  await waitForRunStatus(page, 'FAILED');
  assert.deepEqual(await page.getByTestId('test-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name'))), ['fail.sh']);
  // "Rerun all" of the first one holds both tests again.
  await page.getByTestId('rerun-of').click();
  await page.getByTestId('rerun-all').click();
  await page.waitForURL((url) => !url.pathname.endsWith(`/testruns/${first}`));
  await page.getByTestId('test-row').nth(1).waitFor();
  assert.deepEqual(
    (await page.getByTestId('test-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name')))).sort(),
    ['fail.sh', 'pass.sh'],
  );
  await waitForRunStatus(page, 'FAILED');
});

e2e('a suite page lists the suite\'s tests and its Testruns', async () => {
  const id = await createThroughForm(page, 'e2e-suite', [
    { name: 'quick.sh', content: 'echo quick\n' },
    { name: 'slower.sh', content: 'sleep 1\necho slower\n' },
  ], { suite: 'e2e-fleet' });
  await waitForRunStatus(page, 'SUCCESS');
  await page.getByTestId('suite-link').click();
  await page.waitForURL(/\/suites\/e2e-fleet/);
  // History is recorded as the Testrun finishes: read the page again until it shows.
  const deadline = Date.now() + 30_000;
  while ((await page.locator('[data-testid="slow-test"][data-name="slower.sh"]').count()) === 0) {
    assert.ok(Date.now() < deadline, 'slower.sh never appeared on the suite page');
    await page.waitForTimeout(500);
    await page.reload();
    await page.getByTestId('suite-name').waitFor();
  }
  const names = await page.getByTestId('slow-test').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name')));
  assert.ok(names.includes('quick.sh'), `suite tests: ${names.join(', ')}`);
  await page.locator(`[data-testid="suite-testrun"][data-id="${id}"]`).waitFor();
  // A test's history on click, with a link to this Testrun.
  await page.locator('[data-testid="slow-test"][data-name="slower.sh"]').click();
  await page.locator('[data-testid="test-history"][data-name="slower.sh"]').getByTestId('history-row').first().waitFor();
  // Reachable from the app bar too.
  await page.getByRole('link', { name: 'Suites' }).click();
  await page.locator('[data-testid="suite-row"][data-name="e2e-fleet"]').waitFor();
});

e2e('tests no runner can take wait, and the Testrun says why', async () => {
  await createThroughForm(page, 'e2e-pool', [{ name: 'gpu.sh', content: 'echo on a gpu\n' }], { selector: 'gpu=a100' });
  await page.getByTestId('testrun-status').waitFor();
  const waiting = page.getByTestId('waiting');
  await waiting.waitFor({ timeout: 10_000 });
  assert.match((await waiting.textContent()) ?? '', /gpu=a100/);
  assert.equal(await testRow(page, 'gpu.sh').getAttribute('data-status'), 'QUEUED');
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel Testrun' }).click();
  await waitForRunStatus(page, 'CANCELLED');
});

e2e('a runner token is created with its secret shown once, and revoked', async () => {
  await page.goto(`${baseUrl}/runners`);
  await page.getByTestId('token-name').fill('e2e-pool');
  await page.getByTestId('create-token').click();
  const secret = (await page.getByTestId('token-secret-value').textContent())?.trim() ?? '';
  assert.ok(secret.length >= 16, `secret: ${secret}`);
  const row = page.locator('[data-testid="token-row"][data-name="e2e-pool"]');
  await row.getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await row.getByTestId('revoked').waitFor();
  // The secret is not shown again after a reload.
  await page.reload();
  await row.getByTestId('revoked').waitFor();
  assert.equal(await page.getByTestId('token-secret-value').count(), 0);
});

// Last: a drained runner takes no more tests.
e2e('the runners page lists the runners, and draining one shows it draining', async () => {
  await page.goto(`${baseUrl}/`);
  await page.getByRole('link', { name: 'Runners' }).click();
  await page.waitForURL(/\/runners$/);
  for (const name of RUNNERS) await page.locator(`[data-testid="runner-row"][data-name="${name}"]`).waitFor();
  const row = page.locator(`[data-testid="runner-row"][data-name="${RUNNERS[0]}"]`);
  await row.getByRole('button', { name: 'Drain' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Drain' }).click();
  await row.and(page.locator('[data-draining="true"]')).waitFor();
  // Still draining after the next refreshes (the state is the coordinator's).
  await page.waitForTimeout(2500);
  assert.equal(await row.getAttribute('data-draining'), 'true');
  assert.equal(await page.locator(`[data-testid="runner-row"][data-name="${RUNNERS[1]}"]`).getAttribute('data-draining'), 'false');
});
