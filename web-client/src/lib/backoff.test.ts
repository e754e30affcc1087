import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff';

describe('backoffDelay', () => {
  const opts = (r: number) => ({ baseMs: 100, maxMs: 1000, random: () => r });

  it('doubles per attempt up to the cap', () => {
    expect([1, 2, 3, 4, 5, 9].map((a) => backoffDelay(a, opts(0.999999)))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('jitters each delay down to half', () => {
    expect(backoffDelay(3, opts(0))).toBe(200);
    expect(backoffDelay(3, opts(0.5))).toBe(300);
  });
});
