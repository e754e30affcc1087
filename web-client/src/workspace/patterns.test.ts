import { describe, expect, it } from 'vitest';
import { compileGlob } from './glob';
import { isIgnored, parseIgnore } from './ignore';
import { expandPatterns, parseEnv, splitPatterns } from './patterns';

const paths = [
  'README.md',
  'src/pkg/__init__.py',
  'tests/conftest.py',
  'tests/test_a.py',
  'tests/unit/test_b.py',
  'tests/unit/deep/test_c.py',
];

describe('compileGlob', () => {
  it.each([
    ['tests/**/test_*.py', 'tests/test_a.py', true],
    ['tests/**/test_*.py', 'tests/unit/deep/test_c.py', true],
    ['tests/**/test_*.py', 'src/test_x.py', false],
    ['tests/*.py', 'tests/unit/test_b.py', false],
    ['**/conftest.py', 'tests/conftest.py', true],
    ['**/conftest.py', 'conftest.py', true],
    ['tests/**', 'tests/unit/test_b.py', true],
    ['test_?.py', 'test_a.py', true],
    ['test_[ab].py', 'test_c.py', false],
    ['test_[!ab].py', 'test_c.py', true],
    ['a.b', 'axb', false],
    ['\\*.py', '*.py', true],
  ])('%s on %s is %s', (glob, path, want) => {
    expect(compileGlob(glob)(path)).toBe(want);
  });
});

describe('expandPatterns', () => {
  it('expands globs over the files, sorted and without duplicates', () => {
    expect(expandPatterns(['tests/**/test_*.py', 'tests/test_a.py'], paths)).toEqual({
      ok: true,
      tests: ['tests/test_a.py', 'tests/unit/deep/test_c.py', 'tests/unit/test_b.py'],
    });
  });
  it('keeps a selector after :: on a file that exists', () => {
    expect(expandPatterns(['tests/test_a.py::TestLogin'], paths)).toEqual({
      ok: true,
      tests: ['tests/test_a.py::TestLogin'],
    });
  });
  it('names the pattern that matches nothing', () => {
    expect(expandPatterns(['tests/**/test_*.py', 'it/**/*.py'], paths)).toEqual({
      ok: false,
      error: 'it/**/*.py: matches no file in the folder',
    });
    expect(expandPatterns(['tests/nope.py'], paths)).toEqual({ ok: false, error: 'tests/nope.py: no such file in the folder' });
    expect(expandPatterns([], paths).ok).toBe(false);
  });
  it('splits lines and drops ./', () => {
    expect(splitPatterns(' ./tests/a.py \n\n tests/b.py')).toEqual(['tests/a.py', 'tests/b.py']);
  });
});

describe('parseEnv', () => {
  it('reads K=V lines, values kept whole', () => {
    expect(parseEnv('CI=true\n# comment\n\nPYTHONPATH=src\nX=a=b ')).toEqual({
      ok: true,
      env: { CI: 'true', PYTHONPATH: 'src', X: 'a=b ' },
    });
  });
  it.each([
    ['NOEQUALS', 'line 1: expected NAME=value'],
    ['1X=2', "line 1: '1X' is not a variable name"],
    ['A-B=1', "line 1: 'A-B' is not a variable name"],
    ['A=1\nPATH=/x', "line 2: PATH is the runner's own"],
    ['TESTRUNNER_TOKEN=x', "line 1: TESTRUNNER_TOKEN is the runner's own"],
    ['A=1\nA=2', 'line 2: A is set twice'],
  ])('refuses %j', (text, error) => {
    const r = parseEnv(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(error);
  });
  it('caps the count and the size', () => {
    const many = Array.from({ length: 129 }, (_, i) => `V${i}=1`).join('\n');
    expect(parseEnv(many)).toMatchObject({ ok: false, error: '129 variables: at most 128' });
    expect(parseEnv(`BIG=${'x'.repeat(33 * 1024)}`).ok).toBe(false);
  });
});

describe('ignore rules', () => {
  const rules = parseIgnore(
    ['# build output', '*.pyc', '__pycache__/', '/dist', 'docs/_build/', '!keep.pyc', 'logs/**', '!logs/keep.txt', 'trailing   '].join('\n'),
  );
  it.each([
    ['a.pyc', true],
    ['src/x/a.pyc', true],
    ['keep.pyc', false],
    ['src/__pycache__/m.py', true],
    ['__pycache__', false], // a file named so: the rule is for directories
    ['dist/app.js', true],
    ['src/dist/app.js', false], // anchored at the root
    ['docs/_build/index.html', true],
    ['logs/a.txt', true],
    ['logs/keep.txt', false],
    ['trailing', true],
    ['.git/config', true],
    ['sub/.git', true],
    ['src/pkg/mod.py', false],
  ])('%s ignored: %s', (path, want) => {
    expect(isIgnored(rules, path)).toBe(want);
  });
  it('cannot re-include a file inside an ignored directory', () => {
    const r = parseIgnore('build/\n!build/keep.txt');
    expect(isIgnored(r, 'build/keep.txt')).toBe(true);
  });
});
