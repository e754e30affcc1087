import { describe, expect, it } from 'vitest';
import { formatDuration, spanMs } from './format';

describe('formatDuration', () => {
  it('picks a unit a person reads at a glance', () => {
    expect([850, 4200, 42_000, 185_000, 3_725_000].map(formatDuration)).toEqual([
      '850ms',
      '4.2s',
      '42s',
      '3m 05s',
      '1h 02m',
    ]);
    expect(formatDuration(undefined)).toBe('');
  });

  it('measures an open span up to now', () => {
    const start = new Date(1000);
    expect(spanMs(start, undefined, 4000)).toBe(3000);
    expect(spanMs(start, new Date(2500), 4000)).toBe(1500);
    expect(spanMs(undefined, undefined, 4000)).toBeUndefined();
  });
});
