// One Testrun followed live through WatchTestrun, resumable from its cursor.

import { Code, type Client } from '@connectrpc/connect';
import {
  Setup_Status,
  Test_Status,
  type Test,
  type Testrun,
  type TestrunEvent,
  type TestrunService,
} from '../gen/testrunner/v1/testrun_pb';
import type { BackoffOptions } from '../lib/backoff';
import { describeError } from '../lib/errors';
import { isTerminal } from '../lib/status';
import { follow, type Connection } from './follow';
import { LogCache, type LogCacheOptions } from './LogCache';
import { Observable } from './observable';

/** What the detail page shows. */
export interface TestrunWatchState {
  /** The Testrun with its tests; undefined until the first snapshot. */
  testrun?: Testrun;
  /** The id does not exist (or was deleted). */
  notFound: boolean;
  connection: Connection;
  /** Why the stream last failed, while reconnecting. */
  error?: string;
  /**
   * Grows whenever where an attempt's lines start becomes known (see
   * `attemptRange`), so views re-read ranges.
   */
  attemptsVersion?: number;
}

/** Lines `[from, to)` of a test's log (positions across all attempts). */
export interface LineRange {
  from: number;
  to: number;
}

/**
 * Follows one Testrun: a snapshot, then test changes, Testrun changes and log
 * lines. When the stream drops (a coordinator restart) it calls again with
 * `after` = the last cursor: the server sends a fresh snapshot and only the
 * lines after that cursor, and lines are stored by position, so nothing is
 * lost and nothing shows twice.
 */
export class TestrunWatch extends Observable<TestrunWatchState> {
  /** The logs of this Testrun's tests. */
  readonly logs: LogCache;
  private cursor = 0n;
  private readonly abort = new AbortController();
  private started = false;
  /** Whether any event arrived: until then there is no cursor to resume. */
  private received = false;
  /** Workspace details (see `refreshExtras`): a read in flight, another wanted, the Testrun has none. */
  private extrasBusy = false;
  private extrasAgain = false;
  private noWorkspace = false;
  /** The stream itself carries the workspace and `setup` events: no reads needed. */
  private extrasInStream = false;
  /**
   * Where each attempt's lines start, per test, learnt from `log` events
   * (their lines carry the attempt; GetTestLog's do not). Attempts run one
   * after another, so each attempt's lines are one run of positions.
   */
  private readonly attemptStarts = new Map<bigint, Map<number, number>>();
  /**
   * The log position the first connection started at (it skips the stored
   * history): lines before it came with no attempt, until `scanHistory`.
   */
  private historyEnd: bigint | undefined;
  private historyScan: 'none' | 'running' | 'done' = 'none';

  constructor(
    readonly id: bigint,
    private readonly client: Client<typeof TestrunService>,
    private readonly backoff: BackoffOptions,
    logOptions: LogCacheOptions = {},
  ) {
    super({ notFound: false, connection: 'connecting' });
    this.logs = new LogCache(async (req, signal) => {
      const res = await client.getTestLog(
        {
          testrunId: req.testrunId,
          test: { case: 'testId', value: req.testId },
          offset: BigInt(req.offset),
          limit: req.limit,
        },
        { signal },
      );
      return { lines: res.lines, total: Number(res.total) };
    }, logOptions);
  }

  /** The cursor to resume from: that of the last event received. */
  get lastCursor(): bigint {
    return this.cursor;
  }

  /** Opens the stream (once). */
  start(): void {
    if (this.started) return;
    this.started = true;
    void follow<TestrunEvent>({
      signal: this.abort.signal,
      backoff: this.backoff,
      // The first connection skips stored history (the log view pages it
      // in with GetTestLog); later ones resume from the cursor.
      open: (signal, onOpen) =>
        this.client.watchTestrun(
          { id: this.id, after: this.cursor, fromEnd: !this.received },
          { signal, onHeader: onOpen },
        ),
      onEvent: (ev) => this.apply(ev),
      onConnection: (connection) => {
        this.setState(connection === 'live' ? { connection, error: undefined } : { connection });
      },
      onRetry: (err) => this.setState({ error: err === undefined ? undefined : describeError(err) }),
      reconnectAfterEnd: () => !this.finished(),
      isFinal: (err) => err.code === Code.NotFound || err.code === Code.InvalidArgument,
      onFinal: (err) => {
        if (err.code === Code.NotFound) this.setState({ notFound: true, connection: 'ended' });
        else this.setState({ error: describeError(err), connection: 'ended' });
      },
    });
  }

  /** Stops the stream and log fetches. */
  close(): void {
    this.abort.abort();
    this.logs.dispose();
  }

  /** Applies one event; exposed for tests. */
  apply(ev: TestrunEvent): void {
    if (!this.received && this.historyEnd === undefined) this.historyEnd = ev.cursor;
    this.received = true;
    this.cursor = ev.cursor;
    const e = ev.event;
    switch (e.case) {
      case 'snapshot': {
        // A coordinator that puts the workspace in snapshots also sends `setup` events.
        if (e.value.workspace !== undefined) this.extrasInStream = true;
        for (const t of e.value.tests) this.noteLog(t);
        this.setState({ testrun: withExtras(e.value, this.state.testrun), notFound: false });
        this.refreshExtras();
        break;
      }
      case 'test': {
        const run = this.state.testrun;
        this.noteLog(e.value);
        if (run === undefined) return;
        const tests = [...run.tests];
        const i = tests.findIndex((t) => t.id === e.value.id);
        const old = i >= 0 ? tests[i] : undefined;
        // Updates that only change counts leave `attempts` out: keep ours.
        const next =
          old !== undefined && e.value.attempts.length === 0 && old.attempts.length > 0
            ? { ...e.value, attempts: old.attempts }
            : e.value;
        if (i >= 0) tests[i] = next;
        else tests.push(next);
        this.setState({ testrun: { ...run, tests } });
        // A test starting on a runner means its set-up there ended; an ERROR
        // may be a failed set-up.
        if (this.setupsMayHaveChanged(e.value)) this.refreshExtras();
        break;
      }
      case 'log': {
        const l = e.value;
        this.logs.append(this.id, l.testId, Number(l.firstLine), l.lines);
        this.noteAttempt(l.testId, l.attempt, Number(l.firstLine), l.lines.length);
        break;
      }
      case 'testrun': {
        const run = this.state.testrun;
        // `testrun` events carry no tests: keep the ones we have (and the
        // set-ups, when the event leaves them out).
        this.setState({ testrun: withExtras({ ...e.value, tests: run?.tests ?? [] }, run) });
        this.refreshExtras();
        break;
      }
      case 'setup': {
        this.extrasInStream = true;
        // One runner's set-up started or ended: replace that runner's entry.
        const run = this.state.testrun;
        if (run === undefined) return;
        const setups = [...run.setups];
        const i = setups.findIndex((s) => s.runner === e.value.runner);
        if (i >= 0) setups[i] = e.value;
        else setups.push(e.value);
        this.setState({ testrun: { ...run, setups } });
        break;
      }
      default:
        // An event kind newer than this console: ignore it.
        break;
    }
  }

  /**
   * Reads the workspace, set-up, env and per-runner set-ups with GetTestrun.
   * The stream's snapshots and `testrun` events may leave them out (the
   * coordinator sends them with GetTestrun), and a coordinator that sends no
   * `setup` events still shows set-ups this way: read once per snapshot, and
   * again when an event suggests a set-up changed. Calls are coalesced (one
   * at a time, one more if asked meanwhile); a Testrun without a workspace is
   * not read again.
   */
  private refreshExtras(): void {
    if (this.noWorkspace || this.extrasInStream || this.abort.signal.aborted) return;
    if (this.extrasBusy) {
      this.extrasAgain = true;
      return;
    }
    this.extrasBusy = true;
    this.client.getTestrun({ id: this.id }, { signal: this.abort.signal }).then(
      (full) => {
        this.extrasBusy = false;
        if (full.workspace === undefined) {
          this.noWorkspace = true;
          return;
        }
        const run = this.state.testrun;
        if (run !== undefined) this.setState({ testrun: withExtras(run, full, true) });
        if (this.extrasAgain) {
          this.extrasAgain = false;
          this.refreshExtras();
        }
      },
      () => {
        // The stream reports connection trouble; the next event asks again.
        this.extrasBusy = false;
        this.extrasAgain = false;
      },
    );
  }

  private noteAttempt(testId: bigint, attempt: number, first: number, count: number): boolean {
    if (count === 0 || attempt === 0) return false;
    let starts = this.attemptStarts.get(testId);
    if (starts === undefined) {
      starts = new Map();
      this.attemptStarts.set(testId, starts);
    }
    const known = starts.get(attempt);
    if (known !== undefined && known <= first) return false;
    starts.set(attempt, first);
    this.setState({ attemptsVersion: (this.state.attemptsVersion ?? 0) + 1 });
    return true;
  }

  /**
   * The lines attempt `attempt` of a test printed, or undefined while that
   * is not known yet (call `scanHistory`). The last attempt's range runs to
   * the end of the log as it grows.
   */
  attemptRange(testId: bigint, attempt: number, total: number): LineRange | undefined {
    const starts = this.attemptStarts.get(testId);
    const complete = this.historyEnd === undefined || this.historyEnd === 0n || this.historyScan === 'done';
    // Before the scan, lines older than this watch came without attempts.
    if (!complete) return undefined;
    const from = starts?.get(attempt);
    if (from === undefined) return { from: 0, to: 0 };
    let to = total;
    for (const [a, start] of starts ?? []) if (a > attempt && start >= from && start < to) to = start;
    return { from, to: Math.max(from, to) };
  }

  /**
   * Reads the stored history once (WatchTestrun from the first line, up to
   * where this watch started) to learn where each attempt's lines start;
   * the lines themselves are not kept (the log cache pages them in).
   */
  scanHistory(): void {
    const end = this.historyEnd;
    if (this.historyScan !== 'none' || end === undefined || end === 0n) return;
    this.historyScan = 'running';
    const abort = new AbortController();
    this.abort.signal.addEventListener('abort', () => abort.abort());
    void (async () => {
      try {
        for await (const ev of this.client.watchTestrun({ id: this.id, after: 0n }, { signal: abort.signal })) {
          // Only lines move the cursor (a snapshot's may already be the end).
          if (ev.event.case !== 'log') continue;
          const l = ev.event.value;
          this.noteAttempt(l.testId, l.attempt, Number(l.firstLine), l.lines.length);
          if (ev.cursor >= end) break;
        }
        this.historyScan = 'done';
      } catch {
        // Try again on the next ask.
        this.historyScan = 'none';
      } finally {
        abort.abort();
        this.setState({ attemptsVersion: (this.state.attemptsVersion ?? 0) + 1 });
      }
    })();
  }

  /** Whether a test change may come with a set-up change not seen yet. */
  private setupsMayHaveChanged(t: Test): boolean {
    if (this.noWorkspace || this.extrasInStream) return false;
    if (t.status === Test_Status.ERROR) return true;
    if (t.runner === '') return false;
    const s = this.state.testrun?.setups.find((x) => x.runner === t.runner);
    return s === undefined || s.status === Setup_Status.RUNNING;
  }

  private noteLog(t: Test): void {
    this.logs.noteTotal(this.id, t.id, Number(t.logLines));
  }

  /** The server ends the stream on its own once this is true. */
  private finished(): boolean {
    const run = this.state.testrun;
    if (run === undefined) return false;
    return isTerminal(run.status) && !run.tests.some((t) => t.status === Test_Status.RUNNING);
  }
}

/**
 * `run` with the workspace details of `from` where `run` has none (stream
 * snapshots and `testrun` events may leave them out), and the set-ups of
 * both by runner, those of the newer one winning.
 */
function withExtras(run: Testrun, from: Testrun | undefined, fromIsNewer = false): Testrun {
  if (from === undefined || from.id !== run.id) return run;
  const out = { ...run };
  if (out.workspace === undefined && from.workspace !== undefined) {
    out.workspace = from.workspace;
    if (out.setup === undefined) out.setup = from.setup;
    if (Object.keys(out.env).length === 0) out.env = from.env;
    if (out.setupTimeoutSeconds === 0) out.setupTimeoutSeconds = from.setupTimeoutSeconds;
  }
  out.setups = fromIsNewer ? mergeSetups(run.setups, from.setups) : mergeSetups(from.setups, run.setups);
  return out;
}

/** Set-ups by runner: those of `newer` replace those of `older`, order kept. */
function mergeSetups(older: Testrun['setups'], newer: Testrun['setups']): Testrun['setups'] {
  const out = [...older];
  for (const s of newer) {
    const i = out.findIndex((x) => x.runner === s.runner);
    if (i >= 0) out[i] = s;
    else out.push(s);
  }
  return out;
}
