// @ts-check
// End-to-end tests of the console against the real coordinator and runners,
// in headless Chromium.
//
// Needs, built beforehand (this script builds nothing):
// - dist/ (`npm run build`);
// - `coordinator` and `runner` in $TESTRUNNER_BIN_DIR (default ../target/debug);
// - Chromium at $CHROMIUM_PATH (default /usr/bin/chromium; `apt-get install chromium`).
//
// Starts a coordinator on a free port with a fresh SQLite file and two
// runners, drives the console, and stops every process at the end, also when
// a test fails. Run with `npm run e2e`.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { launchBrowser, missingPrerequisite, startStack, webClient, screenshottingTest } from './harness.mjs';

// Every run takes the README's screenshot; only `make screenshot` (which sets
// TESTRUNNER_SCREENSHOT) writes it where the README shows it, so running the
// tests never modifies tracked files.
const screenshotPath = process.env.TESTRUNNER_SCREENSHOT
  ? path.resolve(process.env.TESTRUNNER_SCREENSHOT)
  : path.join(os.tmpdir(), 'testrunner-e2e', 'testrun-detail.png');
/** How long a Testrun of tiny shell scripts may take to finish. */
const FINISH_MS = 60_000;

/** @type {string} */ let tmp;
/** @type {string} */ let baseUrl;
/** @type {Awaited<ReturnType<typeof startStack>> | undefined} */ let stack;
/** @type {import('playwright-core').BrowserContext | undefined} */ let browser;
/** @type {import('playwright-core').Page} */ let page;
let failures = 0;

const e2e = screenshottingTest({
  timeout: 120_000,
  page: () => page,
  dir: () => tmp,
  failed: () => {
    failures++;
  },
});

/**
 * Creates a Testrun through the /new form by uploading files, and resolves
 * to its id once the console has moved to its page.
 */
async function createThroughForm(p, username, files, options = {}) {
  await p.goto(`${baseUrl}/new`);
  await p.getByTestId('username').fill(username);
  await p.getByTestId('file-input').setInputFiles(
    files.map((f) => ({ name: f.name, mimeType: 'text/plain', buffer: Buffer.from(f.content) })),
  );
  for (const f of files) await p.getByTestId('file-list').getByText(f.name, { exact: true }).waitFor();
  if (options.command !== undefined) await p.getByTestId('command').fill(options.command);
  if (options.timeout !== undefined) await p.getByTestId('timeout').fill(String(options.timeout));
  await p.getByTestId('submit').click();
  await p.waitForURL(/\/testruns\/\d+/);
  const id = /\/testruns\/(\d+)/.exec(p.url())?.[1];
  assert.ok(id, `no Testrun id in ${p.url()}`);
  return id;
}

/** Waits for the detail page to show the Testrun in `status`. */
async function waitForRunStatus(p, status, timeout = FINISH_MS) {
  await p.locator(`[data-testid="testrun-status"][data-status="${status}"]`).waitFor({ timeout });
}

function testRow(p, name) {
  return p.locator(`[data-testid="test-row"][data-name="${name}"]`);
}

function logView(p) {
  return p.getByTestId('log-view');
}

before(async () => {
  const missing = missingPrerequisite();
  assert.equal(missing, undefined, missing);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'testrunner-e2e-'));
  stack = await startStack({ tmp });
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

e2e('a passing test file reaches SUCCESS and shows its output', async () => {
  await createThroughForm(page, 'e2e-user', [{ name: 'ok.sh', content: 'echo hello\nexit 0\n' }]);
  await waitForRunStatus(page, 'SUCCESS');
  await testRow(page, 'ok.sh').and(page.locator('[data-status="PASSED"]')).waitFor();
  await logView(page).getByText('hello', { exact: true }).waitFor();
});

e2e('a failing test file makes the Testrun FAILED with its exit code', async () => {
  await createThroughForm(page, 'e2e-user', [{ name: 'fail.sh', content: 'echo about to fail\nexit 3\n' }]);
  await waitForRunStatus(page, 'FAILED');
  const row = testRow(page, 'fail.sh');
  await row.and(page.locator('[data-status="FAILED"]')).waitFor();
  assert.equal((await row.locator('td').nth(2).textContent())?.trim(), '3');
});

e2e('log lines appear live while their test is still running', async () => {
  await createThroughForm(page, 'e2e-live', [
    { name: 'live.sh', content: "echo 'first line'\nsleep 3\necho 'second line'\n" },
  ]);
  await logView(page).getByText('first line', { exact: true }).waitFor({ timeout: FINISH_MS });
  // Seen while the test still sleeps: streamed, not loaded after the fact.
  assert.equal(await testRow(page, 'live.sh').getAttribute('data-status'), 'RUNNING');
  assert.equal(await logView(page).getByText('second line').count(), 0);
  await logView(page).getByText('second line', { exact: true }).waitFor({ timeout: FINISH_MS });
  await waitForRunStatus(page, 'SUCCESS');
});

e2e('a running Testrun is cancelled from its page after confirming', async () => {
  await createThroughForm(page, 'e2e-cancel', [{ name: 'long.sh', content: 'echo sleeping\nsleep 60\n' }]);
  await testRow(page, 'long.sh').and(page.locator('[data-status="RUNNING"]')).waitFor({ timeout: FINISH_MS });
  await page.getByRole('button', { name: 'Cancel', exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Cancel Testrun' }).click();
  await waitForRunStatus(page, 'CANCELLED', 30_000);
  await testRow(page, 'long.sh').and(page.locator('[data-status="CANCELLED"]')).waitFor({ timeout: 30_000 });
});

e2e('a Testrun id that does not exist shows Not Found', async () => {
  await page.goto(`${baseUrl}/testruns/999999`);
  const notFound = page.getByTestId('not-found');
  await notFound.waitFor();
  assert.match((await notFound.textContent()) ?? '', /Testrun not found/);
});

e2e('an unknown path shows the Not Found page with a way back', async () => {
  await page.goto(`${baseUrl}/no/such/page`);
  await page.getByTestId('not-found').waitFor();
  await page.getByRole('link', { name: 'Back to Testruns' }).click();
  await page.waitForURL(`${baseUrl}/`);
  await page.getByRole('heading', { name: 'Testruns' }).waitFor();
});

e2e('a bad username is reported beside the username field', async () => {
  for (const username of ['x'.repeat(65), '']) {
    await page.goto(`${baseUrl}/new`);
    await page.getByTestId('username').fill(username);
    await page.getByTestId('file-input').setInputFiles({ name: 'ok.sh', mimeType: 'text/plain', buffer: Buffer.from('exit 0\n') });
    await page.getByTestId('file-list').getByText('ok.sh').waitFor();
    await page.getByTestId('submit').click();
    await page.waitForFunction(
      () => document.querySelector('[data-testid="username"]')?.getAttribute('aria-invalid') === 'true',
    );
    const helper = (await page.getByTestId('username-helper').textContent()) ?? '';
    assert.match(helper, /64|character/, `username helper says: ${helper}`);
    assert.match(page.url(), /\/new$/);
  }
});

e2e('the list shows a new Testrun and its status change without reloading', async () => {
  await page.goto(`${baseUrl}/`);
  await page.getByTestId('testrun-row').first().waitFor();
  const other = await /** @type {import('playwright-core').BrowserContext} */ (browser).newPage();
  try {
    const id = await createThroughForm(other, 'e2e-list', [{ name: 'quick.sh', content: 'echo quick\n' }]);
    const row = page.locator(`[data-testid="testrun-row"][data-id="${id}"]`);
    await row.waitFor({ timeout: 15_000 });
    await row.locator('[data-status="SUCCESS"]').waitFor({ timeout: FINISH_MS });
    assert.match((await row.textContent()) ?? '', /e2e-list/);
  } finally {
    await other.close();
  }
});

e2e('the detail page of a finished Testrun, screenshotted for the README', async () => {
  const report = [
    'echo "collecting tests..."',
    'for t in login logout session_refresh password_reset profile_update avatar_upload; do',
    '  printf "\\033[32mPASSED\\033[0m tests/test_api.py::test_%s\\n" "$t"',
    'done',
    'printf "\\033[33mWARNING\\033[0m deprecated call in tests/test_api.py:42\\n"',
    'printf "\\033[1m6 passed, 1 warning\\033[0m in 0.42s\\n"',
  ].join('\n');
  const failing = [
    'echo "running database checks"',
    'printf "\\033[32mPASSED\\033[0m test_connect\\n"',
    'printf "\\033[31mFAILED\\033[0m test_migrations: expected 12 tables, got 11\\n"',
    'exit 1',
  ].join('\n');
  await createThroughForm(page, 'alice', [
    { name: 'test_api.sh', content: `${report}\n` },
    { name: 'test_db.sh', content: `${failing}\n` },
    { name: 'test_ui.sh', content: 'echo "rendering 24 components"\necho "all snapshots match"\n' },
  ]);
  await waitForRunStatus(page, 'FAILED');
  await testRow(page, 'test_api.sh').click();
  await logView(page).getByText('6 passed, 1 warning').waitFor();
  await mkdir(path.dirname(screenshotPath), { recursive: true });
  await page.screenshot({ path: screenshotPath });
});

// Last, as it restarts the coordinator under the other tests' feet.
e2e('after a coordinator restart the log resumes without losing or repeating lines', async () => {
  const ticks = 'i=1\nwhile [ $i -le 40 ]; do echo "tick $i"; i=$((i+1)); sleep 0.25; done\n';
  await createThroughForm(page, 'e2e-restart', [{ name: 'ticks.sh', content: ticks }]);
  await logView(page).getByText('tick 5', { exact: true }).waitFor({ timeout: FINISH_MS });
  const restart = /** @type {NonNullable<typeof stack>} */ (stack).restartCoordinator(1500);
  await page.locator('[data-testid="connection"][data-connection="reconnecting"]').waitFor({ timeout: 10_000 });
  await restart;
  await waitForRunStatus(page, 'SUCCESS', 90_000);
  await page.waitForFunction(() => document.querySelector('[data-testid="log-view"]')?.getAttribute('data-total') === '40');
  const lines = await page.locator('.log-line').evaluateAll((rows) =>
    rows.map((r) => r.textContent?.replace(/^\d+/, '') ?? ''),
  );
  assert.deepEqual(
    lines,
    Array.from({ length: 40 }, (_, i) => `tick ${i + 1}`),
  );
});
