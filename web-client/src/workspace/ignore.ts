// The subset of gitignore the console honours, from the top-level
// `.gitignore` and `.ignore` of the picked folder (nested ignore files,
// `$GIT_DIR/info/exclude` and the global excludes file are not read).
//
// Per line: blank lines and `#` comments are skipped; `\#` and `\!` are
// literal; trailing unescaped spaces are trimmed; `!` re-includes; a
// trailing `/` matches directories only; a pattern with a '/' at its start
// or middle is anchored at the root, one without matches a name at any
// depth; the glob syntax of ./glob.ts. As in git, a file inside an ignored
// directory cannot be re-included, and the last matching line wins.

import { globSource } from './glob';

interface Rule {
  negate: boolean;
  dirOnly: boolean;
  re: RegExp;
}

export type IgnoreRules = readonly Rule[];

/** Parses one ignore file's text (later files' lines win over earlier ones). */
export function parseIgnore(text: string): Rule[] {
  const rules: Rule[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.replace(/(?<!\\)\s+$/, '');
    if (line === '' || line.startsWith('#')) continue;
    let negate = false;
    if (line.startsWith('!')) {
      negate = true;
      line = line.slice(1);
    } else if (line.startsWith('\\!') || line.startsWith('\\#')) {
      line = line.slice(1);
    }
    let dirOnly = false;
    if (line.endsWith('/')) {
      dirOnly = true;
      line = line.replace(/\/+$/, '');
    }
    if (line === '') continue;
    const anchored = line.includes('/');
    if (line.startsWith('/')) line = line.slice(1);
    const src = globSource(line);
    rules.push({ negate, dirOnly, re: new RegExp(anchored ? `^${src}$` : `^(?:.*/)?${src}$`, 'u') });
  }
  return rules;
}

/** The last rule's verdict on one path, or undefined if none matches. */
function verdict(rules: IgnoreRules, path: string, isDir: boolean): boolean | undefined {
  for (let i = rules.length - 1; i >= 0; i--) {
    const r = rules[i]!;
    if (r.dirOnly && !isDir) continue;
    if (r.re.test(path)) return !r.negate;
  }
  return undefined;
}

/**
 * Whether a file at `path` ('/'-separated, relative to the root) is left
 * out: it is in or is a `.git`, or it or one of its directories is ignored.
 */
export function isIgnored(rules: IgnoreRules, path: string): boolean {
  const segments = path.split('/');
  if (segments.includes('.git')) return true;
  let dir = '';
  for (const s of segments.slice(0, -1)) {
    dir = dir === '' ? s : `${dir}/${s}`;
    if (verdict(rules, dir, true) === true) return true;
  }
  return verdict(rules, path, false) === true;
}
