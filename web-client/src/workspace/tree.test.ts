// @vitest-environment node
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildTree, compareBytewise, digestKey, hashBlob } from './tree';

// A protobuf encoder written from the wire-format rules, independent of
// @bufbuild/protobuf, to compute reference digests by hand.
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const utf8 = (s: string) => [...new TextEncoder().encode(s)];
/** Field `n`, wire type 2 (length-delimited). */
const bytesField = (n: number, b: number[]) => [(n << 3) | 2, ...varint(b.length), ...b];
/** Field `n`, wire type 0, omitted when 0 (proto3 default). */
const varintField = (n: number, v: number) => (v === 0 ? [] : [n << 3, ...varint(v)]);
const sha = (b: number[] | string) => createHash('sha256').update(typeof b === 'string' ? b : Buffer.from(b)).digest('hex');
// Digest { hash = 1; size_bytes = 2 }
const digest = (hash: string, size: number) => [...bytesField(1, utf8(hash)), ...varintField(2, size)];
// FileNode { name = 1; digest = 2; is_executable = 4 (false: omitted) }
const fileNode = (name: string, content: string) => [
  ...bytesField(1, utf8(name)),
  ...bytesField(2, digest(sha(content), utf8(content).length)),
];
// DirectoryNode { name = 1; digest = 2 }
const dirNode = (name: string, encoded: number[]) => [
  ...bytesField(1, utf8(name)),
  ...bytesField(2, digest(sha(encoded), encoded.length)),
];
// Directory { files = 1; directories = 2 }
const directory = (files: number[][], dirs: number[][]) => [
  ...files.flatMap((f) => bytesField(1, f)),
  ...dirs.flatMap((d) => bytesField(2, d)),
];

/**
 * Root digest of a folder holding only `a.txt` = "hello\n":
 * sha256(0a 4f | 0a 05 "a.txt" | 12 46 | 0a 40 <sha256("hello\n") hex> 10 06), 79 bytes.
 */
const PINNED_ONE_FILE = 'eb8d6f9545e418ae849cc6319cf0d810d7dd4e01e0eb5d603817eeb64b87b9f3/79';

const file = (path: string, content: string) => ({ path, blob: new Blob([content]) });

describe('buildTree', () => {
  it('gives the digest computed by hand from the encoding rules', async () => {
    // root: README.md, b.txt (empty), src/pkg/__init__.py, tests/test_a.py
    const pkg = directory([fileNode('__init__.py', 'x = 1\n')], []);
    const src = directory([], [dirNode('pkg', pkg)]);
    const tests = directory([fileNode('test_a.py', 'def test(): pass\n')], []);
    const root = directory(
      [fileNode('README.md', '# hi\n'), fileNode('b.txt', '')],
      [dirNode('src', src), dirNode('tests', tests)],
    );
    const tree = await buildTree([
      file('tests/test_a.py', 'def test(): pass\n'),
      file('src/pkg/__init__.py', 'x = 1\n'),
      file('b.txt', ''),
      file('README.md', '# hi\n'),
    ]);
    expect(tree.root.hash).toBe(sha(root));
    expect(tree.root.sizeBytes).toBe(BigInt(root.length));
    expect(tree.files).toBe(4);
    expect(tree.bytes).toBe(5 + 0 + 6 + 17);
    expect(tree.paths).toEqual(['README.md', 'b.txt', 'src/pkg/__init__.py', 'tests/test_a.py']);
    // 4 files + 4 directories (root, src, src/pkg, tests).
    expect(tree.blobs.size).toBe(8);
    const rootBlob = tree.blobs.get(digestKey(tree.root));
    expect(rootBlob?.kind === 'directory' && [...rootBlob.data]).toEqual(root);
  });

  it('pins the digest of a one-file tree (the value the Rust side must give too)', async () => {
    // Directory{files:[FileNode{name:"a.txt", digest:{sha256("hello\n"), 6}}]}, computed
    // with Python's hashlib over the bytes written out by hand.
    const tree = await buildTree([file('a.txt', 'hello\n')]);
    expect(`${tree.root.hash}/${tree.root.sizeBytes}`).toBe(PINNED_ONE_FILE);
  });

  it('is the same whatever order the files come in', async () => {
    const a = await buildTree([file('x/1', 'a'), file('x/2', 'b'), file('y', 'c')]);
    const b = await buildTree([file('y', 'c'), file('x/2', 'b'), file('x/1', 'a')]);
    expect(b.root).toEqual(a.root);
  });

  it('changes when one byte of one file changes, and only that file and its folders change', async () => {
    const a = await buildTree([file('x/1', 'a'), file('y/2', 'b')]);
    const b = await buildTree([file('x/1', 'a'), file('y/2', 'B')]);
    expect(b.root.hash).not.toBe(a.root.hash);
    const only = (t: typeof a) => new Set(t.blobs.keys());
    const changed = [...only(b)].filter((k) => !only(a).has(k));
    // the file, y/ and the root
    expect(changed).toHaveLength(3);
  });

  it('sorts names bytewise in UTF-8, not by UTF-16 code units', () => {
    // U+FF5E (EF BD 9E) < U+1F600 (F0 9F 98 80) in UTF-8, but not in UTF-16.
    expect(compareBytewise('\uff5e', '\u{1f600}')).toBeLessThan(0);
    expect('\uff5e' < '\u{1f600}').toBe(false);
    expect(compareBytewise('B', 'a')).toBeLessThan(0);
  });

  it('shares one blob between equal files', async () => {
    const t = await buildTree([file('a', 'same'), file('b', 'same')]);
    expect(t.blobs.size).toBe(2); // one file blob + the root
  });

  it('refuses names a Directory cannot hold', async () => {
    await expect(buildTree([file('a/../b', 'x')])).rejects.toThrow("a/../b: '..' is not allowed");
    await expect(buildTree([file('a//b', 'x')])).rejects.toThrow('a//b: empty path segment');
    await expect(buildTree([file('a\u0001', 'x')])).rejects.toThrow('control character');
    await expect(buildTree([file('a', 'x'), file('a/b', 'y')])).rejects.toThrow('both a file and a folder');
  });

  it('reports hashing progress up to every file and byte', async () => {
    const seen: Array<[number, number]> = [];
    await buildTree([file('a', '12345'), file('b', '678')], {
      onProgress: (p) => seen.push([p.filesHashed, p.bytesHashed]),
    });
    expect(seen[0]).toEqual([0, 0]);
    expect(seen[seen.length - 1]).toEqual([2, 8]);
  });
});

describe('hashBlob', () => {
  it('hashes a large blob slice by slice to the same digest', async () => {
    const data = Uint8Array.from({ length: 300_001 }, (_, i) => (i * 7) & 0xff);
    const want = createHash('sha256').update(data).digest('hex');
    let read = 0;
    const hex = await hashBlob(new Blob([data]), (n) => (read += n), { wholeFileLimit: 1000, sliceBytes: 65_536 });
    expect(hex).toBe(want);
    expect(read).toBe(data.length);
    expect(await hashBlob(new Blob([data]))).toBe(want);
  });
});
