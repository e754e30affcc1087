// @ts-check
// Starts the real coordinator and runners for end-to-end tests, and headless
// Chromium to drive the console. Nothing here builds anything.

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const webClient = path.resolve(here, '..');
export const binDir = path.resolve(webClient, process.env.TESTRUNNER_BIN_DIR ?? '../target/debug');
export const distDir = path.join(webClient, 'dist');
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const RUNNER_TOKEN = 'e2e-token';

/** @typedef {{name: string, proc: import('node:child_process').ChildProcess, log: string}} Proc */

/** @type {Proc[]} */
const everything = [];
// Never leave a coordinator or runner behind, whatever ends this process.
process.on('exit', () => {
  for (const p of everything) signalGroup(p.proc, 'SIGKILL');
});

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** What is missing before the stack can start, or undefined. */
export function missingPrerequisite() {
  for (const bin of ['coordinator', 'runner']) {
    if (!existsSync(path.join(binDir, bin))) return `${bin} not found in ${binDir}: build the services first`;
  }
  if (!existsSync(path.join(distDir, 'index.html'))) return `${distDir} has no index.html: run npm run build first`;
  if (!existsSync(chromiumPath)) return `no Chromium at ${chromiumPath}: apt-get install chromium`;
  return undefined;
}

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}

function signalGroup(proc, signal) {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGTERM to the process group, SIGKILL if it is still there after `graceMs`. */
async function stop(p, graceMs = 5000) {
  const running = () => p.proc.exitCode === null && p.proc.signalCode === null;
  if (!running()) return;
  signalGroup(p.proc, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && running()) await sleep(50);
  signalGroup(p.proc, 'SIGKILL');
  while (running()) await sleep(20);
}

export async function tail(file, lines = 60) {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * A coordinator on a free port (fresh SQLite file in `tmp`, serving dist/)
 * plus runners, ready once `/` serves the console.
 * @param {{tmp: string, runners?: string[], slots?: number, apiToken?: string}} options
 */
export async function startStack(options) {
  const { tmp, runners = ['e2e-r1', 'e2e-r2'], slots = 2 } = options;
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  /** @type {Proc[]} */
  const procs = [];
  let generation = 0;

  const start = (name, bin, args) => {
    const log = path.join(tmp, `${name}.log`);
    const out = createWriteStream(log, { flags: 'a' });
    const proc = spawn(path.join(binDir, bin), args, {
      detached: true, // own process group: stopping it reaches its children too
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
    });
    proc.stdout?.pipe(out);
    proc.stderr?.pipe(out);
    const p = { name, proc, log };
    procs.push(p);
    everything.push(p);
    return p;
  };

  const coordinatorArgs = [
    '--listen',
    `127.0.0.1:${port}`,
    '--database-url',
    `sqlite://${path.join(tmp, 'e2e.db')}`,
    '--runner-token',
    RUNNER_TOKEN,
    '--console-dir',
    distDir,
    ...(options.apiToken !== undefined ? ['--api-token', options.apiToken] : []),
  ];
  let coordinator = start('coordinator', 'coordinator', coordinatorArgs);

  const waitForConsole = async (timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (coordinator.proc.exitCode !== null) {
        throw new Error(`coordinator exited with ${coordinator.proc.exitCode}:\n${await tail(coordinator.log)}`);
      }
      try {
        const res = await fetch(`${baseUrl}/`);
        const body = await res.text();
        if (res.ok && body.includes('id="root"')) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = String(err);
      }
      await sleep(100);
    }
    throw new Error(`the console was not served at ${baseUrl}/ within ${timeoutMs} ms (last: ${last})`);
  };

  await waitForConsole();
  for (const name of runners) {
    start(name, 'runner', ['--coordinator', baseUrl, '--token', RUNNER_TOKEN, '--name', name, '--slots', String(slots)]);
  }

  return {
    baseUrl,
    procs,
    /** Stops the coordinator and starts it again on the same port and database. */
    async restartCoordinator(downMs = 0) {
      await stop(coordinator);
      await sleep(downMs);
      generation++;
      coordinator = start(`coordinator-${generation}`, 'coordinator', coordinatorArgs);
      await waitForConsole();
    },
    async stop() {
      await Promise.all(procs.map((p) => stop(p)));
    },
    async dumpLogs() {
      for (const p of procs) console.error(`\n--- last lines of ${p.name} (${p.log}) ---\n${await tail(p.log)}`);
    },
  };
}

/** Headless Chromium with a fresh profile in `profileDir`. */
export async function launchBrowser(profileDir, viewport = { width: 1280, height: 900 }) {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
  });
  context.setDefaultTimeout(15_000);
  return context;
}

/**
 * A `node:test` test factory whose tests save a screenshot of the page when
 * their body fails, and report the failure (so a suite can keep its temp dir).
 * The body gets the test context (to skip with a reason).
 * @param {{ timeout: number, page: () => import('playwright-core').Page | undefined, dir: () => string, failed: () => void }} o
 */
export function screenshottingTest({ timeout, page, dir, failed }) {
  return (
    /** @type {string} */ name,
    /** @type {(t: import('node:test').TestContext) => Promise<void>} */ body,
  ) =>
    test(name, { timeout }, async (t) => {
      try {
        await body(t);
      } catch (err) {
        failed();
        const shot = path.join(dir(), `failure-${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
        await page()?.screenshot({ path: shot, fullPage: true }).catch(() => {});
        console.error(`screenshot of the failure: ${shot}`);
        throw err;
      }
    });
}
