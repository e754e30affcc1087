// ANSI escape sequences in log lines, turned into styled text segments.
//
// Each line is parsed on its own, starting from the default style: the log
// viewer loads lines in random-access pages, so carrying the SGR state from
// one line to the next would make a line's colour depend on lines that may not
// be loaded. Test tools colour per line in practice (and reset at the end), so
// little is lost.

/** A run of text with one style. Colours are CSS colour strings. */
export interface AnsiSegment {
  text: string;
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
}

interface Style {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
  inverse?: boolean;
}

/** The 16 basic colours, tuned to be readable on the viewer's dark background. */
const BASIC = [
  '#3b3b3b', '#f14c4c', '#23d18b', '#f5f543', '#3b8eea', '#d670d6', '#29b8db', '#e5e5e5',
  '#666666', '#ff6b6b', '#4be3a4', '#ffff77', '#64a8ff', '#ef8cef', '#5fd7ff', '#ffffff',
];

/** Default colours, used when `inverse` swaps an unset colour. */
export const DEFAULT_FG = '#d4d4d4';
export const DEFAULT_BG = '#1e1e1e';

/** The xterm 256-colour palette entry `n`. */
export function color256(n: number): string | undefined {
  if (!Number.isInteger(n) || n < 0 || n > 255) return undefined;
  if (n < 16) return BASIC[n];
  if (n < 232) {
    const i = n - 16;
    const level = (v: number) => (v === 0 ? 0 : 55 + v * 40);
    return rgb(level(Math.floor(i / 36)), level(Math.floor(i / 6) % 6), level(i % 6));
  }
  const grey = 8 + (n - 232) * 10;
  return rgb(grey, grey, grey);
}

function rgb(r: number, g: number, b: number): string {
  const hex = (v: number) => Math.max(0, Math.min(255, v)).toString(16).padStart(2, '0');
  return `#${hex(r)}${hex(g)}${hex(b)}`;
}

/** Applies one SGR parameter list (`ESC [ ... m`) to a style. */
function applySgr(style: Style, params: number[]): Style {
  const s = { ...style };
  if (params.length === 0) params = [0];
  for (let i = 0; i < params.length; i++) {
    const p = params[i] ?? 0;
    if (p === 0) {
      for (const k of Object.keys(s)) delete s[k as keyof Style];
    } else if (p === 1) s.bold = true;
    else if (p === 2) s.dim = true;
    else if (p === 3) s.italic = true;
    else if (p === 4) s.underline = true;
    else if (p === 7) s.inverse = true;
    else if (p === 22) {
      s.bold = false;
      s.dim = false;
    } else if (p === 23) s.italic = false;
    else if (p === 24) s.underline = false;
    else if (p === 27) s.inverse = false;
    else if (p >= 30 && p <= 37) s.fg = BASIC[p - 30];
    else if (p >= 90 && p <= 97) s.fg = BASIC[p - 90 + 8];
    else if (p === 39) delete s.fg;
    else if (p >= 40 && p <= 47) s.bg = BASIC[p - 40];
    else if (p >= 100 && p <= 107) s.bg = BASIC[p - 100 + 8];
    else if (p === 49) delete s.bg;
    else if (p === 38 || p === 48) {
      // 38;5;n or 38;2;r;g;b (and 48 for the background).
      let c: string | undefined;
      if (params[i + 1] === 5) {
        c = color256(params[i + 2] ?? -1);
        i += 2;
      } else if (params[i + 1] === 2) {
        c = rgb(params[i + 2] ?? 0, params[i + 3] ?? 0, params[i + 4] ?? 0);
        i += 4;
      }
      if (c !== undefined) {
        if (p === 38) s.fg = c;
        else s.bg = c;
      }
    }
  }
  return s;
}

function segmentOf(text: string, st: Style): AnsiSegment {
  const seg: AnsiSegment = { text };
  let fg = st.fg;
  let bg = st.bg;
  if (st.inverse) {
    fg = st.bg ?? DEFAULT_BG;
    bg = st.fg ?? DEFAULT_FG;
  }
  if (fg !== undefined) seg.fg = fg;
  if (bg !== undefined) seg.bg = bg;
  if (st.bold) seg.bold = true;
  if (st.dim) seg.dim = true;
  if (st.italic) seg.italic = true;
  if (st.underline) seg.underline = true;
  return seg;
}

// CSI sequences (ESC [ params final), OSC sequences (ESC ] ... BEL or ESC \)
// and two-character escapes.
const ESCAPE = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;

/**
 * Splits a log line into styled segments. SGR sequences (`ESC[...m`) set the
 * style; every other escape sequence (cursor moves, erase, titles) is dropped.
 * A carriage return keeps only what was printed after it, as a terminal
 * would show a progress line.
 */
export function parseAnsi(line: string): AnsiSegment[] {
  const cr = line.lastIndexOf('\r', line.length - 2);
  if (cr >= 0) line = line.slice(cr + 1);
  if (line.endsWith('\r')) line = line.slice(0, -1);

  const out: AnsiSegment[] = [];
  let style: Style = {};
  let last = 0;
  ESCAPE.lastIndex = 0;
  for (let m = ESCAPE.exec(line); m !== null; m = ESCAPE.exec(line)) {
    if (m.index > last) out.push(segmentOf(line.slice(last, m.index), style));
    if (m[2] === 'm') {
      const params = (m[1] ?? '')
        .split(/[;:]/)
        .filter((p) => p !== '')
        .map((p) => Number.parseInt(p, 10));
      style = applySgr(style, params);
    }
    last = ESCAPE.lastIndex;
  }
  if (last < line.length) out.push(segmentOf(line.slice(last), style));
  return out;
}

/** The text of a line without escape sequences, as a person reads it. */
export function stripAnsi(line: string): string {
  return parseAnsi(line)
    .map((s) => s.text)
    .join('');
}

/** A segment, cut further where it overlaps a search match. */
export interface MarkedSegment extends AnsiSegment {
  match?: boolean;
}

/**
 * Marks every case-insensitive occurrence of `query` in the segments, so the
 * viewer can highlight search hits without losing colours.
 */
export function markMatches(segments: AnsiSegment[], query: string): MarkedSegment[] {
  if (query === '') return segments;
  const plain = segments.map((s) => s.text).join('');
  const hay = plain.toLowerCase();
  const needle = query.toLowerCase();
  const ranges: Array<[number, number]> = [];
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + needle.length)) {
    ranges.push([i, i + needle.length]);
  }
  if (ranges.length === 0) return segments;

  const out: MarkedSegment[] = [];
  let pos = 0;
  let r = 0;
  for (const seg of segments) {
    const end = pos + seg.text.length;
    let cut = pos;
    while (cut < end) {
      while (r < ranges.length && (ranges[r]?.[1] ?? 0) <= cut) r++;
      const range = ranges[r];
      if (range === undefined || range[0] >= end) {
        out.push({ ...seg, text: seg.text.slice(cut - pos) });
        cut = end;
      } else if (range[0] > cut) {
        out.push({ ...seg, text: seg.text.slice(cut - pos, range[0] - pos) });
        cut = range[0];
      } else {
        const stop = Math.min(range[1], end);
        out.push({ ...seg, text: seg.text.slice(cut - pos, stop - pos), match: true });
        cut = stop;
      }
    }
    pos = end;
  }
  return out;
}
