import { describe, expect, it } from 'vitest';
import { color256, markMatches, parseAnsi, stripAnsi } from './ansi';

describe('parseAnsi', () => {
  it('keeps plain text as one unstyled segment', () => {
    expect(parseAnsi('hello world')).toEqual([{ text: 'hello world' }]);
  });

  it('applies basic, bright, 256 and true colours and resets', () => {
    const segs = parseAnsi('\x1b[31mred\x1b[0m \x1b[1;92mok\x1b[39m! \x1b[38;5;208mo\x1b[48;2;1;2;3mx\x1b[m.');
    expect(segs).toEqual([
      { text: 'red', fg: '#f14c4c' },
      { text: ' ' },
      { text: 'ok', fg: '#4be3a4', bold: true },
      { text: '! ', bold: true },
      { text: 'o', fg: color256(208), bold: true },
      { text: 'x', fg: color256(208), bg: '#010203', bold: true },
      { text: '.' },
    ]);
  });

  it('drops non-colour escape sequences and keeps what follows a carriage return', () => {
    expect(stripAnsi('\x1b[2K\x1b[1Gdone\x1b]0;title\x07')).toBe('done');
    expect(stripAnsi(' 10%\r 50%\r100%')).toBe('100%');
    expect(stripAnsi('windows line\r')).toBe('windows line');
  });

  it('swaps colours for inverse video', () => {
    expect(parseAnsi('\x1b[7;31mx')).toEqual([{ text: 'x', fg: '#1e1e1e', bg: '#f14c4c' }]);
  });
});

describe('markMatches', () => {
  it('marks matches across segment boundaries, case-insensitively, keeping colours', () => {
    const marked = markMatches(parseAnsi('\x1b[32mHel\x1b[0mlo hello'), 'hello');
    expect(marked).toEqual([
      { text: 'Hel', fg: '#23d18b', match: true },
      { text: 'lo', match: true },
      { text: ' ' },
      { text: 'hello', match: true },
    ]);
  });

  it('returns the segments unchanged without a query or a match', () => {
    const segs = parseAnsi('abc');
    expect(markMatches(segs, '')).toBe(segs);
    expect(markMatches(segs, 'zz')).toBe(segs);
  });
});
