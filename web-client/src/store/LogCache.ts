// Test logs in memory, bounded: fixed-size pages of lines, least recently
// used pages dropped first.
//
// Lines arrive two ways, and both write by position, so neither can
// duplicate or reorder a line:
// - live, from WatchTestrun `log` events (`first_line` + lines);
// - on demand, from GetTestLog pages, when the viewer shows lines that are
//   not in memory (scrolled back, or evicted).
// A million-line log costs a few pages of memory plus what is on screen.

import { stripAnsi } from '../lib/ansi';

/** Lines per page, both in memory and per GetTestLog call while scrolling. */
export const LOG_PAGE = 1000;
/** Lines per GetTestLog call while searching (the API's maximum). */
export const SEARCH_CHUNK = 10_000;
/** Pages kept across all tests of a Testrun by default (about 200k lines). */
export const DEFAULT_MAX_PAGES = 200;

/** Reads one range of a stored log (GetTestLog). */
export type LogFetcher = (
  req: { testrunId: bigint; testId: bigint; offset: number; limit: number },
  signal?: AbortSignal,
) => Promise<{ lines: string[]; total: number }>;

interface Page {
  lines: (string | undefined)[];
  /** How many slots of `lines` hold a line. */
  filled: number;
}

interface TestLog {
  testrunId: bigint;
  testId: bigint;
  total: number;
  pages: Map<number, Page>;
  /** Pages with a GetTestLog call under way. */
  inflight: Set<number>;
  /** For each page fetched, the log's total when it was, so a page is fetched again only once more lines exist. */
  fetchedAt: Map<number, number>;
}

export interface LogCacheOptions {
  maxPages?: number;
  /**
   * Coalesces change notifications: log events may arrive hundreds of times
   * a second and the view only needs a frame's worth. 0 notifies in a microtask.
   */
  notifyDelayMs?: number;
  /** Wait before fetching a page again after a failed call. */
  retryMs?: number;
}

/** Bounded, position-addressed storage of the logs of one Testrun's tests. */
export class LogCache {
  private readonly tests = new Map<bigint, TestLog>();
  // Insertion-ordered: the first key is the least recently used page.
  private readonly lru = new Map<string, [bigint, number]>();
  private readonly listeners = new Set<() => void>();
  private readonly maxPages: number;
  private readonly notifyDelayMs: number;
  private readonly retryMs: number;
  private version = 0;
  private pending: ReturnType<typeof setTimeout> | undefined;
  private microtaskQueued = false;
  private disposed = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly fetcher: LogFetcher,
    options: LogCacheOptions = {},
  ) {
    this.maxPages = Math.max(2, options.maxPages ?? DEFAULT_MAX_PAGES);
    this.notifyDelayMs = options.notifyDelayMs ?? 50;
    this.retryMs = options.retryMs ?? 2000;
  }

  /** Increases on every change; a cheap snapshot for useSyncExternalStore. */
  readonly getVersion = (): number => this.version;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** Lines the test's log holds, as far as this client knows. */
  total(testId: bigint): number {
    return this.tests.get(testId)?.total ?? 0;
  }

  /** Line `index` of the test's log, or undefined while not in memory. */
  line(testId: bigint, index: number): string | undefined {
    const log = this.tests.get(testId);
    if (log === undefined) return undefined;
    return log.pages.get(Math.floor(index / LOG_PAGE))?.lines[index % LOG_PAGE];
  }

  /** Pages held in memory (for tests and diagnostics). */
  pageCount(): number {
    return this.lru.size;
  }

  /** Records that the log has at least `total` lines (Test.log_lines). */
  noteTotal(testrunId: bigint, testId: bigint, total: number): void {
    const log = this.log(testrunId, testId);
    if (total > log.total) {
      log.total = total;
      this.changed();
    }
  }

  /** Stores lines that start at position `first` (a `log` event). */
  append(testrunId: bigint, testId: bigint, first: number, lines: readonly string[]): void {
    if (lines.length === 0) return;
    const log = this.log(testrunId, testId);
    this.write(log, first, lines);
    log.total = Math.max(log.total, first + lines.length);
    this.changed();
  }

  /**
   * Makes sure lines [from, to) of a test are in memory or on their way:
   * marks their pages as recently used and fetches the missing ones.
   */
  ensure(testId: bigint, from: number, to: number): void {
    const log = this.tests.get(testId);
    if (log === undefined || this.disposed) return;
    to = Math.min(to, log.total);
    if (to <= from) return;
    for (let p = Math.floor(Math.max(0, from) / LOG_PAGE); p * LOG_PAGE < to; p++) {
      const page = log.pages.get(p);
      if (page !== undefined) this.touch(log.testId, p);
      const want = Math.min(LOG_PAGE, log.total - p * LOG_PAGE);
      if ((page?.filled ?? 0) >= want || log.inflight.has(p)) continue;
      const fetchedAt = log.fetchedAt.get(p);
      if (fetchedAt !== undefined && fetchedAt >= log.total) continue;
      void this.fetchPage(log, p);
    }
  }

  /**
   * Finds the next line at or after `from` (`direction` 1), or at or before
   * `from` (-1), whose text contains `query` (case-insensitive, colours
   * ignored). Scans memory first and fetches missing ranges in large pages.
   * Resolves to the line index, or -1 when there is none.
   */
  async find(
    testId: bigint,
    query: string,
    from: number,
    direction: 1 | -1,
    signal?: AbortSignal,
  ): Promise<number> {
    const log = this.tests.get(testId);
    const needle = query.toLowerCase();
    if (log === undefined || needle === '') return -1;
    const matches = (line: string | undefined) =>
      line !== undefined &&
      (/[\x1b\r]/.test(line) ? stripAnsi(line) : line).toLowerCase().includes(needle);

    if (from < 0 || from >= log.total) return -1;
    let i = from;
    while (i >= 0 && i < log.total) {
      signal?.throwIfAborted();
      const chunk = Math.floor(i / SEARCH_CHUNK) * SEARCH_CHUNK;
      const end = Math.min(chunk + SEARCH_CHUNK, log.total);
      const lines = await this.range(log, chunk, end, signal);
      if (direction > 0) {
        for (; i < end; i++) if (matches(lines[i - chunk])) return i;
      } else {
        for (; i >= chunk; i--) if (matches(lines[i - chunk])) return i;
      }
    }
    return -1;
  }

  /** Stops fetches and notifications; the page is going away. */
  dispose(): void {
    this.disposed = true;
    this.abort.abort();
    if (this.pending !== undefined) clearTimeout(this.pending);
    this.listeners.clear();
  }

  private log(testrunId: bigint, testId: bigint): TestLog {
    let log = this.tests.get(testId);
    if (log === undefined) {
      log = {
        testrunId,
        testId,
        total: 0,
        pages: new Map(),
        inflight: new Set(),
        fetchedAt: new Map(),
      };
      this.tests.set(testId, log);
    }
    return log;
  }

  private write(log: TestLog, first: number, lines: readonly string[]): void {
    for (let k = 0; k < lines.length; ) {
      const pos = first + k;
      const p = Math.floor(pos / LOG_PAGE);
      let page = log.pages.get(p);
      if (page === undefined) {
        page = { lines: [], filled: 0 };
        log.pages.set(p, page);
      }
      this.touch(log.testId, p);
      const stop = Math.min(lines.length, (p + 1) * LOG_PAGE - first);
      for (; k < stop; k++) {
        const slot = (first + k) % LOG_PAGE;
        if (page.lines[slot] === undefined) page.filled++;
        page.lines[slot] = lines[k];
      }
    }
    this.evict();
  }

  private touch(testId: bigint, page: number): void {
    const key = `${testId}:${page}`;
    this.lru.delete(key);
    this.lru.set(key, [testId, page]);
  }

  private evict(): void {
    while (this.lru.size > this.maxPages) {
      const oldest = this.lru.keys().next();
      if (oldest.done === true) return;
      const entry = this.lru.get(oldest.value);
      this.lru.delete(oldest.value);
      if (entry === undefined) continue;
      const log = this.tests.get(entry[0]);
      log?.pages.delete(entry[1]);
      log?.fetchedAt.delete(entry[1]);
    }
  }

  private async fetchPage(log: TestLog, p: number): Promise<void> {
    log.inflight.add(p);
    const askedAt = log.total;
    try {
      const res = await this.fetcher(
        { testrunId: log.testrunId, testId: log.testId, offset: p * LOG_PAGE, limit: LOG_PAGE },
        this.abort.signal,
      );
      if (this.disposed) return;
      this.write(log, p * LOG_PAGE, res.lines);
      log.total = Math.max(log.total, res.total, p * LOG_PAGE + res.lines.length);
      log.fetchedAt.set(p, Math.max(askedAt, res.total));
    } catch {
      if (this.disposed) return;
      // Do not hammer a failing server: try this page again a bit later.
      log.fetchedAt.set(p, Number.MAX_SAFE_INTEGER);
      setTimeout(() => {
        log.fetchedAt.delete(p);
        this.changed();
      }, this.retryMs);
    } finally {
      log.inflight.delete(p);
    }
    this.changed();
  }

  /** Lines [from, to) from memory, or from one GetTestLog call. */
  private async range(log: TestLog, from: number, to: number, signal?: AbortSignal): Promise<(string | undefined)[]> {
    const out: (string | undefined)[] = [];
    let complete = true;
    for (let i = from; i < to; i++) {
      const line = this.line(log.testId, i);
      if (line === undefined) {
        complete = false;
        break;
      }
      out.push(line);
    }
    if (complete) return out;
    const res = await this.fetcher(
      { testrunId: log.testrunId, testId: log.testId, offset: from, limit: to - from },
      signal,
    );
    return res.lines;
  }

  private changed(): void {
    if (this.disposed) return;
    this.version++;
    if (this.notifyDelayMs === 0) {
      if (this.microtaskQueued) return;
      this.microtaskQueued = true;
      queueMicrotask(() => {
        this.microtaskQueued = false;
        this.notify();
      });
      return;
    }
    if (this.pending !== undefined) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.notify();
    }, this.notifyDelayMs);
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}
