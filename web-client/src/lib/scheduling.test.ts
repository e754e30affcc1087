import { describe, expect, it } from 'vitest';
import { parseScheduling, parseSelector, schedulingFieldOf } from './scheduling';

describe('parseSelector', () => {
  it('reads key=value entries separated by commas or lines', () => {
    expect(parseSelector(' gpu=a100,\nos = linux ,, ')).toEqual({ ok: true, selector: { gpu: 'a100', os: 'linux' } });
    expect(parseSelector('')).toEqual({ ok: true, selector: {} });
  });

  it('names what is wrong, starting with the field', () => {
    expect(parseSelector('gpu')).toEqual({ ok: false, error: 'selector: "gpu" is not key=value' });
    expect(parseSelector('=a')).toEqual({ ok: false, error: 'selector: empty key' });
    expect(parseSelector('gpu=')).toEqual({ ok: false, error: 'selector: key "gpu" has an empty value' });
    expect(parseSelector('g pu=a')).toMatchObject({ ok: false, error: expect.stringMatching(/^selector: key "g pu" must be/) });
    expect(parseSelector('gpu=a 1')).toMatchObject({ ok: false, error: expect.stringMatching(/^selector: value "a 1" of key "gpu"/) });
    expect(parseSelector('a=1,a=2')).toEqual({ ok: false, error: 'selector: key "a" given twice' });
    const many = Array.from({ length: 17 }, (_, i) => `k${i}=v`).join(',');
    expect(parseSelector(many)).toEqual({ ok: false, error: 'selector: 17 labels, at most 16' });
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
      errors: { suite: 'longer than 128 characters', retries: 'must be 0 to 5' },
    });
    expect(parseScheduling({ suite: 'a\tb', retries: 0, selector: '' })).toEqual({
      ok: false,
      errors: { suite: 'contains a control character' },
    });
  });

  it('maps server error keys to their field', () => {
    expect(schedulingFieldOf('selector["gpu"]')).toBe('selector');
    expect(schedulingFieldOf('retries')).toBe('retries');
    expect(schedulingFieldOf('suite')).toBe('suite');
    expect(schedulingFieldOf('tests[0].name')).toBeUndefined();
  });
});
