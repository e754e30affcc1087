// @vitest-environment node
//
// Digests the Rust side printed for the same trees: `build_tree` of the
// shared crate testrunner-content (branch wt/ws-coord, commit 7992c39) run
// over these files written to disk with mode 0644, through a one-off
// example (`println!("{}/{}", tree.root.hash, tree.root.size_bytes)`).
// The console must give the same values from the same folder.
import { describe, expect, it } from 'vitest';
import { filterFolder } from './collect';
import { buildTree } from './tree';

const FIXTURE: Record<string, string> = {
  '.gitignore': '*.log\nbuild/\n',
  'debug.log': 'ignored\n',
  'build/junk.txt': 'ignored\n',
  '.git/HEAD': 'ref: refs/heads/main\n',
  'README.md': '# calc\n',
  'empty.txt': '',
  'Zed.txt': 'upper case sorts first\n',
  'a b.txt': 'space\n',
  '\u00fcn\u00ef.txt': 'latin\n',
  '\uff5e.txt': 'fullwidth tilde\n',
  '\u{1f600}.txt': 'emoji\n',
  'src/calc/__init__.py': 'from .ops import add\n',
  'src/calc/ops.py': 'def add(a, b):\n    return a + b\n',
  'tests/test_add.py': 'import calc\nassert calc.add(2, 3) == 5\n',
  'tests/unit/deep/test_more.py': 'print("more")\n',
};

describe('digests agree with the Rust side', () => {
  it('for one file', async () => {
    const tree = await buildTree([{ path: 'a.txt', blob: new Blob(['hello\n']) }]);
    expect(`${tree.root.hash}/${tree.root.sizeBytes}`).toBe(
      'eb8d6f9545e418ae849cc6319cf0d810d7dd4e01e0eb5d603817eeb64b87b9f3/79',
    );
  });

  it('for a project with ignored files, .git, an empty file, nested folders and non-ASCII names', async () => {
    const folder = await filterFolder(
      'fixture',
      Object.entries(FIXTURE).map(([path, content]) => ({ path, blob: new Blob([content]) })),
    );
    expect(folder.ignored).toBe(3);
    const tree = await buildTree(folder.files);
    expect(`${tree.root.hash}/${tree.root.sizeBytes}`).toBe(
      'e160e1fc318062a9d103309be430a7ffaf592570b4ca6d0144f0f46aed994617/813',
    );
  });
});
