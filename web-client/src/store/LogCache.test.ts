import { describe, expect, it, vi } from 'vitest';
import { until } from '../test/fixtures';
import { LOG_PAGE, LogCache, type LogFetcher } from './LogCache';

/** A fake GetTestLog over a log of `n` lines named `line <i>`. */
function server(n: () => number) {
  const calls: Array<{ offset: number; limit: number }> = [];
  const fetcher: LogFetcher = async ({ offset, limit }) => {
    calls.push({ offset, limit });
    const end = Math.min(n(), offset + limit);
    const lines = [];
    for (let i = offset; i < end; i++) lines.push(`line ${i}`);
    return { lines, total: n() };
  };
  return { calls, fetcher };
}

describe('LogCache', () => {
  it('stores lines by position, so a repeated or overlapping batch never duplicates', () => {
    const cache = new LogCache(server(() => 0).fetcher, { notifyDelayMs: 0 });
    cache.append(1n, 7n, 0, ['a', 'b', 'c']);
    cache.append(1n, 7n, 2, ['c', 'd']);
    cache.append(1n, 7n, 0, ['a']);
    expect(cache.total(7n)).toBe(4);
    expect([0, 1, 2, 3].map((i) => cache.line(7n, i))).toEqual(['a', 'b', 'c', 'd']);
  });

  it('fetches the pages on screen that are not in memory, once', async () => {
    const srv = server(() => 5000);
    const cache = new LogCache(srv.fetcher, { notifyDelayMs: 0 });
    cache.noteTotal(1n, 7n, 5000);
    cache.ensure(7n, 2500, 2600);
    cache.ensure(7n, 2500, 2600); // already under way
    await until(() => cache.line(7n, 2599) !== undefined);
    expect(srv.calls).toEqual([{ offset: 2000, limit: LOG_PAGE }]);
    expect(cache.line(7n, 2500)).toBe('line 2500');
    cache.ensure(7n, 2500, 2600); // in memory now
    expect(srv.calls).toHaveLength(1);
  });

  it('keeps memory bounded by evicting the least recently used pages', async () => {
    const srv = server(() => 1_000_000);
    const cache = new LogCache(srv.fetcher, { notifyDelayMs: 0, maxPages: 4 });
    cache.noteTotal(1n, 7n, 1_000_000);
    for (let p = 0; p < 20; p++) {
      cache.ensure(7n, p * LOG_PAGE, p * LOG_PAGE + 10);
      await until(() => cache.line(7n, p * LOG_PAGE) !== undefined);
    }
    expect(cache.pageCount()).toBeLessThanOrEqual(4);
    expect(cache.line(7n, 0)).toBeUndefined();
    expect(cache.line(7n, 19 * LOG_PAGE)).toBe(`line ${19 * LOG_PAGE}`);
  });

  it('finds the next and previous matching line, fetching what is not loaded', async () => {
    const srv = server(() => 25_000);
    const cache = new LogCache(srv.fetcher, { notifyDelayMs: 0 });
    cache.noteTotal(1n, 7n, 25_000);
    expect(await cache.find(7n, 'LINE 21000', 0, 1)).toBe(21_000);
    expect(await cache.find(7n, 'line 1', 21_000, -1)).toBe(19_999);
    expect(await cache.find(7n, 'nothing like it', 0, 1)).toBe(-1);
    expect(await cache.find(7n, 'line', -1, -1)).toBe(-1);
    expect(srv.calls.every((c) => c.limit <= 10_000)).toBe(true);
  });

  it('ignores colour codes when searching', async () => {
    const cache = new LogCache(server(() => 0).fetcher, { notifyDelayMs: 0 });
    cache.append(1n, 7n, 0, ['plain', '\x1b[31mer\x1b[0mror here']);
    expect(await cache.find(7n, 'error', 0, 1)).toBe(1);
  });

  it('coalesces notifications of bursts of lines', async () => {
    vi.useFakeTimers();
    try {
      const cache = new LogCache(server(() => 0).fetcher, { notifyDelayMs: 50 });
      const listener = vi.fn();
      cache.subscribe(listener);
      for (let i = 0; i < 100; i++) cache.append(1n, 7n, i, [`l${i}`]);
      expect(listener).not.toHaveBeenCalled();
      vi.advanceTimersByTime(60);
      expect(listener).toHaveBeenCalledTimes(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
