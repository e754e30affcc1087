// @ts-check
// End-to-end test of the console's Workspace mode against the real
// coordinator and runners, in headless Chromium: a small Python project in a
// `src/` layout is picked as a folder (through the `webkitdirectory` input),
// uploaded, set up once per runner, and its tests pass; the set-up and its
// log are shown; a second upload of the unchanged folder sends no blob.
//
// Prerequisites as for console.test.mjs (dist/, the binaries, Chromium) plus
// `python3` on the runners' PATH.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { launchBrowser, missingPrerequisite, startStack, screenshottingTest } from './harness.mjs';

const FINISH_MS = 90_000;

/** @type {string} */ let tmp;
/** @type {string} */ let project;
/** @type {string} */ let baseUrl;
/** @type {Awaited<ReturnType<typeof startStack>> | undefined} */ let stack;
/** @type {import('playwright-core').BrowserContext | undefined} */ let browser;
/** @type {import('playwright-core').Page} */ let page;
let failures = 0;

const e2e = screenshottingTest({
  timeout: 180_000,
  page: () => page,
  dir: () => tmp,
  failed: () => {
    failures++;
  },
});

/** The project: importable only with PYTHONPATH=src, and only after its set-up generated a module. */
const FILES = {
  '.gitignore': '*.log\nbuild/\n',
  '.git/HEAD': 'ref: refs/heads/main\n',
  'debug.log': 'left out by .gitignore\n',
  'build/junk.txt': 'left out by .gitignore\n',
  'src/calc/__init__.py': 'from .ops import add\n',
  'src/calc/ops.py': 'def add(a, b):\n    return a + b\n',
  'tests/helper.py': 'NOT_A_TEST = True\n',
  'tests/test_add.py': [
    'import os',
    'import calc',
    'from calc import _generated',
    'assert calc.add(2, 3) == 5',
    'assert os.environ["GREETING"] == "hello"',
    '# the working directory is the workspace root',
    'assert os.path.exists("tests/helper.py")',
    'print("test_add ok, generated", _generated.VERSION)',
    '',
  ].join('\n'),
  'tests/unit/test_more.py': [
    'from calc import add, _generated',
    'assert add(_generated.VERSION, 1) == 8',
    'print("test_more ok")',
    '',
  ].join('\n'),
};
const SETUP = `python3 -c "open('src/calc/_generated.py', 'w').write('VERSION = 7\\n'); print('generated src/calc/_generated.py')"`;

before(async () => {
  const missing = missingPrerequisite();
  assert.equal(missing, undefined, missing);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'testrunner-e2e-ws-'));
  project = path.join(tmp, 'calc-project');
  for (const [rel, content] of Object.entries(FILES)) {
    await mkdir(path.dirname(path.join(project, rel)), { recursive: true });
    await writeFile(path.join(project, rel), content);
  }
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

/** Fills the Workspace form with the project folder. */
async function fillWorkspace(p, { patterns, setup = SETUP, env = 'PYTHONPATH=src\nGREETING=hello' }) {
  await p.goto(`${baseUrl}/new`);
  await p.getByTestId('username').fill('e2e-ws');
  await p.getByTestId('mode-workspace').click();
  await p.getByTestId('folder-input').setInputFiles(project);
  await p.getByTestId('folder-summary').waitFor();
  await p.getByTestId('patterns').fill(patterns);
  await p.getByTestId('setup').fill(setup);
  await p.getByTestId('env').fill(env);
  await p.getByTestId('command').fill('python3 {file}');
}

/** Submits the form and waits for the Testrun's page; fails at once on an error shown by the form. */
async function submitAndWaitForRun(p) {
  await p.getByTestId('submit').click();
  const formError = p.getByTestId('form-error').first();
  const outcome = await Promise.race([
    p.waitForURL(/\/testruns\/\d+/, { timeout: FINISH_MS }).then(() => 'created'),
    formError.waitFor({ timeout: FINISH_MS }).then(() => 'error'),
  ]);
  if (outcome === 'error') assert.fail(`the form says: ${await formError.textContent()}`);
}

/** Counts upload calls (BatchUploadBlobs, WriteBlob) the page makes. */
function countUploads(p) {
  const counter = { uploads: 0 };
  p.on('request', (r) => {
    if (/ContentService\/(BatchUploadBlobs|WriteBlob)$/.test(r.url())) counter.uploads++;
  });
  return counter;
}

e2e('a pattern that matches no file is named beside the patterns field', async () => {
  await fillWorkspace(page, { patterns: 'tests/**/test_*.py\nit/**/*.py' });
  await page.getByTestId('submit').click();
  await page.getByText('it/**/*.py: matches no file in the folder').waitFor();
  assert.match(page.url(), /\/new$/);
});

e2e('a project folder is uploaded, set up on each runner, and its tests pass', async () => {
  const counter = countUploads(page);
  await fillWorkspace(page, { patterns: 'tests/**/test_*.py' });
  // .gitignore, src/calc/{__init__,ops}.py, tests/helper.py, tests/test_add.py,
  // tests/unit/test_more.py; .git/HEAD, debug.log, build/junk.txt left out.
  assert.match((await page.getByTestId('folder-counts').textContent()) ?? '', /^6 files, .*\(3 left out/);
  await submitAndWaitForRun(page);
  assert.ok(counter.uploads > 0, 'the first upload sends blobs');

  await page.locator('[data-testid="testrun-status"][data-status="SUCCESS"]').waitFor({ timeout: FINISH_MS });
  for (const name of ['tests/test_add.py', 'tests/unit/test_more.py']) {
    await page.locator(`[data-testid="test-row"][data-name="${name}"][data-status="PASSED"]`).waitFor();
  }
  assert.equal(await page.getByTestId('test-row').count(), 2);
  await page.locator('[data-testid="test-row"][data-name="tests/test_add.py"]').click();
  await page.getByTestId('log-view').getByText('test_add ok, generated 7').waitFor();

  assert.match((await page.getByTestId('workspace-size').textContent()) ?? '', /^6 files, /);
  assert.match((await page.getByTestId('workspace-digest').getAttribute('data-digest')) ?? '', /^[0-9a-f]{64}\/\d+$/);
  assert.match((await page.getByTestId('workspace-env').textContent()) ?? '', /GREETING=hello/);
  const setups = page.locator('[data-testid="setup-row"][data-status="PASSED"]');
  await setups.first().waitFor({ timeout: FINISH_MS });
  await setups.first().click();
  await page.getByTestId('setup-log').getByText('generated src/calc/_generated.py').first().waitFor();
  await mkdir(path.join(os.tmpdir(), 'testrunner-e2e'), { recursive: true });
  await page.screenshot({ path: path.join(os.tmpdir(), 'testrunner-e2e', 'workspace-detail.png'), fullPage: true });
});

e2e('uploading the unchanged folder again sends no blob', async () => {
  const counter = countUploads(page);
  await fillWorkspace(page, { patterns: 'tests/test_add.py' });
  await submitAndWaitForRun(page);
  await page.locator('[data-testid="testrun-status"][data-status="SUCCESS"]').waitFor({ timeout: FINISH_MS });
  assert.equal(counter.uploads, 0);
});

e2e('a set-up timeout the coordinator refuses is shown beside that field', async () => {
  await fillWorkspace(page, { patterns: 'tests/test_add.py' });
  await page.getByTestId('setup-timeout').fill('99999999');
  await page.getByTestId('submit').click();
  await page.getByTestId('setup-timeout-helper').getByText(/must be at most \d+ seconds/).waitFor({ timeout: FINISH_MS });
  assert.equal(await page.getByTestId('setup-timeout').getAttribute('aria-invalid'), 'true');
  assert.match(page.url(), /\/new$/);
});

e2e('a failing set-up is shown per runner with its exit code and log', async () => {
  await fillWorkspace(page, { patterns: 'tests/test_add.py', setup: 'echo "installing deps"; exit 3' });
  await submitAndWaitForRun(page);
  const failed = page.locator('[data-testid="setup-row"][data-status="FAILED"]').first();
  await failed.waitFor({ timeout: FINISH_MS });
  assert.equal((await failed.locator('td').nth(3).textContent())?.trim(), '3');
  // A failed set-up's log is open at once.
  await page.getByTestId('setup-log').getByText('installing deps').first().waitFor();
  // Both runners fail the same set-up, so no runner is left for the test:
  // it ends ERROR naming the failed set-up, and the Testrun FAILED.
  await page.locator('[data-testid="testrun-status"][data-status="FAILED"]').waitFor({ timeout: FINISH_MS });
  await mkdir(path.join(os.tmpdir(), 'testrunner-e2e'), { recursive: true });
  await page.screenshot({ path: path.join(os.tmpdir(), 'testrunner-e2e', 'workspace-setup-failed.png') });
});
