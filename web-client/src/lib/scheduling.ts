// The scheduling fields of a new Testrun (suite, retries, selector): parsing
// what the form holds and checking it as the coordinator does, with the same
// messages, so most mistakes show before a round trip.

import type { FieldErrors } from './errors';

export const MAX_RETRIES = 5;
export const MAX_SUITE_CHARS = 128;
export const MAX_SELECTOR_LABELS = 16;
/** Keys and values of runner labels (`--label gpu=a100`). */
export const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
export const LABEL_VALUE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** What the form holds, as typed. */
export interface SchedulingValues {
  suite: string;
  retries: number;
  /** `key=value` entries, separated by commas or new lines. */
  selector: string;
}

export const EMPTY_SCHEDULING: SchedulingValues = { suite: '', retries: 0, selector: '' };

/** What goes into CreateTestrunRequest. */
export interface Scheduling {
  suite?: string;
  retries: number;
  selector: Record<string, string>;
}

export type SchedulingParse = { ok: true; value: Scheduling } | { ok: false; errors: FieldErrors };

const CONTROL = /[\u0000-\u001f\u007f]/;

/** `gpu=a100, os=linux` (or one per line) as a map, or the error the server would give. */
export function parseSelector(text: string): { ok: true; selector: Record<string, string> } | { ok: false; error: string } {
  const selector: Record<string, string> = {};
  const entries = text
    .split(/[,\n]/)
    .map((e) => e.trim())
    .filter((e) => e !== '');
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    if (eq < 0) return { ok: false, error: `selector: "${entry}" is not key=value` };
    const key = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    if (key === '') return { ok: false, error: 'selector: empty key' };
    if (!LABEL_KEY.test(key)) {
      return { ok: false, error: `selector: key "${key}" must be 1 to 63 characters of [A-Za-z0-9._/-], starting with a letter or digit` };
    }
    if (value === '') return { ok: false, error: `selector: key "${key}" has an empty value` };
    if (!LABEL_VALUE.test(value)) {
      return {
        ok: false,
        error: `selector: value "${value}" of key "${key}" must be 1 to 63 characters of [A-Za-z0-9._-], starting with a letter or digit`,
      };
    }
    if (Object.hasOwn(selector, key)) return { ok: false, error: `selector: key "${key}" given twice` };
    selector[key] = value;
  }
  const n = Object.keys(selector).length;
  if (n > MAX_SELECTOR_LABELS) return { ok: false, error: `selector: ${n} labels, at most ${MAX_SELECTOR_LABELS}` };
  return { ok: true, selector };
}

/** Checks the scheduling fields; errors are keyed by field like the server's. */
export function parseScheduling(v: SchedulingValues): SchedulingParse {
  const errors: FieldErrors = {};
  const suite = v.suite.trim();
  if ([...suite].length > MAX_SUITE_CHARS) errors.suite = `longer than ${MAX_SUITE_CHARS} characters`;
  else if (CONTROL.test(suite)) errors.suite = 'contains a control character';
  if (!Number.isInteger(v.retries) || v.retries < 0 || v.retries > MAX_RETRIES) {
    errors.retries = `must be 0 to ${MAX_RETRIES}`;
  }
  const selector = parseSelector(v.selector);
  if (!selector.ok) errors.selector = selector.error.replace(/^selector: /, '');
  if (Object.keys(errors).length > 0 || !selector.ok) return { ok: false, errors };
  return { ok: true, value: { ...(suite !== '' && { suite }), retries: v.retries, selector: selector.selector } };
}

/** Which scheduling field a server error key belongs to (`selector["gpu"]` -> selector). */
export function schedulingFieldOf(key: string): 'suite' | 'retries' | 'selector' | undefined {
  if (key === 'suite' || key === 'retries') return key;
  if (key === 'selector' || key.startsWith('selector[') || key.startsWith('selector.')) return 'selector';
  return undefined;
}

/** The message shown beside a scheduling field, from errors keyed by the server's field paths. */
export function schedulingError(errors: FieldErrors, field: 'suite' | 'retries' | 'selector'): string | undefined {
  const lines = Object.entries(errors)
    .filter(([k]) => schedulingFieldOf(k) === field)
    .map(([k, v]) => (k === field ? v : `${k}: ${v}`));
  return lines.length === 0 ? undefined : lines.join('; ');
}
