import { describe, expect, it } from 'vitest';
import { parseScheduling, parseSelector, schedulingFieldOf } from './scheduling';

describe('parseSelector', () => {
  it('reads key=value entries separated by commas or lines', () => {
    expect(parseSelector(' gpu=a100,\nos = linux ,, ')).toEqual({ ok: true, selector: { gpu: 'a100', os: 'linux' } });
    expect(parseSelector('')).toEqual({ ok: true, selector: {} });
  });

  it('names what is wrong as the coordinator does, keyed by the field it names', () => {
    expect(parseSelector('gpu')).toEqual({ ok: false, field: 'selector', error: '"gpu": expected key=value' });
    expect(parseSelector('=a')).toEqual({ ok: false, field: 'selector[""]', error: 'key must not be empty' });
    expect(parseSelector('gpu=')).toEqual({ ok: false, field: 'selector["gpu"]', error: 'value must not be empty' });
    expect(parseSelector('gp/u=a')).toEqual({
      ok: false,
      field: 'selector["gp/u"]',
      error: `key "gp/u" contains '/' (allowed: letters, digits, '.', '_', '-')`,
    });
    expect(parseSelector(`gpu=${'x'.repeat(64)}`)).toEqual({
      ok: false,
      field: 'selector["gpu"]',
      error: `value "${'x'.repeat(64)}" is longer than 63 characters`,
    });
    expect(parseSelector('a=1,a=2')).toEqual({ ok: false, field: 'selector["a"]', error: 'given twice' });
    const many = Array.from({ length: 17 }, (_, i) => `k${i}=v`).join(',');
    expect(parseSelector(many)).toEqual({ ok: false, field: 'selector', error: 'more than 16 labels (got 17)' });
  });
});

describe('parseScheduling', () => {
  it('leaves an empty suite to the server default', () => {
    expect(parseScheduling({ suite: ' ', retries: 0, selector: '' })).toEqual({ ok: true, value: { retries: 0, selector: {} } });
    expect(parseScheduling({ suite: 'web', retries: 5, selector: 'os=linux' })).toEqual({
      ok: true,
      value: { suite: 'web', retries: 5, selector: { os: 'linux' } },
    });
  });

  it('refuses retries out of range, long suites and control characters', () => {
    expect(parseScheduling({ suite: 'x'.repeat(129), retries: 6, selector: '' })).toEqual({
      ok: false,
      errors: { suite: 'must be 1 to 128 characters (got 129)', retries: 'must be 0 to 5 (got 6)' },
    });
    expect(parseScheduling({ suite: 'a\tb', retries: 0, selector: '' })).toEqual({
      ok: false,
      errors: { suite: 'must not contain control characters' },
    });
  });

  it('maps server error keys to their field', () => {
    expect(schedulingFieldOf('selector["gpu"]')).toBe('selector');
    expect(schedulingFieldOf('retries')).toBe('retries');
    expect(schedulingFieldOf('suite')).toBe('suite');
    expect(schedulingFieldOf('tests[0].name')).toBeUndefined();
  });
});
