// Test patterns and env lines as the Workspace form takes them.

import { compileGlob, hasGlob } from './glob';
import { compareBytewise } from './tree';

/** Patterns, one per line (blank lines skipped); a leading `./` is dropped. */
export function splitPatterns(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim().replace(/^(\.\/)+/, ''))
    .filter((l) => l !== '');
}

export type Expansion = { ok: true; tests: string[] } | { ok: false; error: string };

/**
 * Expands globs over the workspace's files (`tests/**\/test_*.py`; a pattern
 * without glob syntax names one file, optionally with a `::` selector kept
 * as written). Every pattern must match something, as in the CLI; the
 * result is sorted and without duplicates.
 */
export function expandPatterns(patterns: readonly string[], paths: readonly string[]): Expansion {
  if (patterns.length === 0) return { ok: false, error: 'give at least one test pattern' };
  const tests = new Set<string>();
  const files = new Set(paths);
  for (const pattern of patterns) {
    const sep = pattern.indexOf('::');
    if (sep >= 0 || !hasGlob(pattern)) {
      const file = sep >= 0 ? pattern.slice(0, sep) : pattern;
      if (!files.has(file)) return { ok: false, error: `${pattern}: no such file in the folder` };
      tests.add(pattern);
      continue;
    }
    const match = compileGlob(pattern);
    const hits = paths.filter(match);
    if (hits.length === 0) return { ok: false, error: `${pattern}: matches no file in the folder` };
    hits.forEach((h) => tests.add(h));
  }
  return { ok: true, tests: [...tests].sort(compareBytewise) };
}

/** Variables the runner keeps for itself (as the coordinator checks). */
export function reservedEnvName(name: string): boolean {
  return ['PATH', 'HOME', 'TMPDIR'].includes(name) || name.startsWith('TESTRUNNER_');
}

export const MAX_ENV_VARS = 128;
export const MAX_ENV_BYTES = 32 * 1024;

export type EnvParse = { ok: true; env: Record<string, string> } | { ok: false; error: string };

/** `K=V` lines (blank lines and `#` comments skipped); the value is the rest of the line. */
export function parseEnv(text: string): EnvParse {
  const env: Record<string, string> = {};
  let count = 0;
  let bytes = 0;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const at = `line ${i + 1}`;
    const eq = line.indexOf('=');
    if (eq < 0) return { ok: false, error: `${at}: expected NAME=value` };
    const name = line.slice(0, eq).trim();
    const value = line.slice(eq + 1);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      return { ok: false, error: `${at}: '${name}' is not a variable name (letters, digits, _; not starting with a digit)` };
    }
    if (reservedEnvName(name)) return { ok: false, error: `${at}: ${name} is the runner's own and cannot be set` };
    if (Object.hasOwn(env, name)) return { ok: false, error: `${at}: ${name} is set twice` };
    if (value.includes('\0')) return { ok: false, error: `${at}: the value contains NUL` };
    env[name] = value;
    count++;
    bytes += new TextEncoder().encode(name + value).length;
  }
  if (count > MAX_ENV_VARS) return { ok: false, error: `${count} variables: at most ${MAX_ENV_VARS}` };
  if (bytes > MAX_ENV_BYTES) return { ok: false, error: `${bytes} bytes of names and values: at most ${MAX_ENV_BYTES}` };
  return { ok: true, env };
}
