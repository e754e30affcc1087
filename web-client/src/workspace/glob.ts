// Glob patterns as gitignore and test patterns write them, compiled to
// regular expressions over '/'-separated relative paths.
//
// Supported: `*` (any run of characters except '/'), `?` (one character
// except '/'), `[abc]`, `[a-z]`, `[!abc]` / `[^abc]`, `\x` (a literal x),
// and `**` as a whole segment: `**/x` (x in any directory, the root
// included), `x/**` (everything inside x), `a/**/b` (zero or more
// directories between). A `**` inside a segment acts like `*`.

function escapeRegex(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

/** The regex source of one glob (no anchors). */
export function globSource(glob: string): string {
  let out = '';
  let i = 0;
  while (i < glob.length) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const atStart = i === 0 || glob[i - 1] === '/';
        const j = i + 2;
        if (atStart && glob[j] === '/') {
          // `**/`: zero or more whole directories.
          out += '(?:[^/]*/)*';
          i = j + 1;
          continue;
        }
        if (atStart && j === glob.length) {
          // Trailing `**`: anything below.
          out += '.*';
          i = j;
          continue;
        }
        out += '[^/]*';
        i = j;
        continue;
      }
      out += '[^/]*';
      i++;
    } else if (c === '?') {
      out += '[^/]';
      i++;
    } else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) {
        out += '\\[';
        i++;
        continue;
      }
      let body = glob.slice(i + 1, close);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      const cls = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      out += negate ? `[^/${cls}]` : `[${cls}]`;
      i = close + 1;
    } else if (c === '\\' && i + 1 < glob.length) {
      out += escapeRegex(glob[i + 1]!);
      i += 2;
    } else {
      out += escapeRegex(c);
      i++;
    }
  }
  return out;
}

/** Whether a string uses any glob syntax (else it names one path). */
export function hasGlob(s: string): boolean {
  return /[*?[\\]/.test(s);
}

/** A matcher of whole relative paths. */
export function compileGlob(glob: string): (path: string) => boolean {
  const re = new RegExp(`^${globSource(glob)}$`, 'u');
  return (path) => re.test(path);
}
