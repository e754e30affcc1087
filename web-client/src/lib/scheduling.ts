// The scheduling fields of a new Testrun (suite, retries, selector): parsing
// what the form holds and checking it as the coordinator does, with the same
// messages, so most mistakes show before a round trip.

import type { FieldErrors } from './errors';

export const MAX_RETRIES = 5;
export const MAX_SUITE_CHARS = 128;
export const MAX_SELECTOR_LABELS = 16;
/** Longest label key or value, in characters (the runners' `--label` syntax). */
export const MAX_LABEL_CHARS = 63;

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

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LABEL_CHAR = /[A-Za-z0-9._-]/;

/** Why a label key or value breaks the syntax, as the coordinator says it; undefined when fine. */
export function labelPartError(what: 'key' | 'value', text: string): string | undefined {
  if (text === '') return `${what} must not be empty`;
  const chars = [...text];
  if (chars.length > MAX_LABEL_CHARS) return `${what} ${JSON.stringify(text)} is longer than ${MAX_LABEL_CHARS} characters`;
  const bad = chars.find((c) => !LABEL_CHAR.test(c));
  if (bad !== undefined) {
    return `${what} ${JSON.stringify(text)} contains '${bad}' (allowed: letters, digits, '.', '_', '-')`;
  }
  return undefined;
}

/**
 * `gpu=a100, os=linux` (or one per line) as a map, or the error the server
 * would give, keyed as it keys it (`selector` or `selector["gpu"]`).
 */
export function parseSelector(
  text: string,
): { ok: true; selector: Record<string, string> } | { ok: false; field: string; error: string } {
  const selector: Record<string, string> = {};
  const entries = text
    .split(/[,\n]/)
    .map((e) => e.trim())
    .filter((e) => e !== '');
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    if (eq < 0) return { ok: false, field: 'selector', error: `${JSON.stringify(entry)}: expected key=value` };
    const key = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    const field = `selector[${JSON.stringify(key)}]`;
    const wrong = labelPartError('key', key) ?? labelPartError('value', value);
    if (wrong !== undefined) return { ok: false, field, error: wrong };
    if (Object.hasOwn(selector, key)) return { ok: false, field, error: 'given twice' };
    selector[key] = value;
  }
  const n = Object.keys(selector).length;
  if (n > MAX_SELECTOR_LABELS) {
    return { ok: false, field: 'selector', error: `more than ${MAX_SELECTOR_LABELS} labels (got ${n})` };
  }
  return { ok: true, selector };
}

/** Checks the scheduling fields; errors are keyed by field and worded like the server's. */
export function parseScheduling(v: SchedulingValues): SchedulingParse {
  const errors: FieldErrors = {};
  const suite = v.suite.trim();
  const chars = [...suite].length;
  // Empty is fine here: the field is optional (the server then uses the username).
  if (chars > MAX_SUITE_CHARS) errors.suite = `must be 1 to ${MAX_SUITE_CHARS} characters (got ${chars})`;
  else if (CONTROL.test(suite)) errors.suite = 'must not contain control characters';
  if (!Number.isInteger(v.retries) || v.retries < 0 || v.retries > MAX_RETRIES) {
    errors.retries = `must be 0 to ${MAX_RETRIES} (got ${v.retries})`;
  }
  const selector = parseSelector(v.selector);
  if (!selector.ok) errors[selector.field] = selector.error;
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
