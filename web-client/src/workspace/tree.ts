// A workspace tree built exactly as content.proto says, so that equal
// folders get equal digests in the console, the CLI and the coordinator:
//
// - a file is a blob named by the SHA-256 (lowercase hex) of its bytes and
//   its size;
// - each folder is a `Directory` with its files and subfolders, each list
//   sorted bytewise (UTF-8) by name; its digest is that of its protobuf
//   encoding (`toBinary`: fields in number order, defaults omitted);
// - `is_executable` cannot be known in a browser: always false;
// - only folders that hold files exist (a picked folder lists files only,
//   as git tracks files only).

import { create, toBinary } from '@bufbuild/protobuf';
import { DigestSchema, DirectorySchema, type Digest } from '../gen/testrunner/v1/content_pb';
import { Sha256, sha256Hex } from './sha256';

/** One file of the picked folder. */
export interface WorkspaceFile {
  /** Relative to the workspace root, '/'-separated. */
  path: string;
  blob: Blob;
}

/** A blob of the tree and where its bytes come from. */
export type TreeBlob =
  | { kind: 'file'; digest: Digest; path: string; blob: Blob }
  | { kind: 'directory'; digest: Digest; path: string; data: Uint8Array };

export interface Tree {
  /** Digest of the root `Directory`: the workspace's name. */
  root: Digest;
  files: number;
  /** Bytes of all files. */
  bytes: number;
  /** Every distinct blob (files and directories), by `digestKey`. */
  blobs: Map<string, TreeBlob>;
  /** Every file's path, sorted. */
  paths: string[];
}

export interface HashProgress {
  filesHashed: number;
  filesTotal: number;
  bytesHashed: number;
  bytesTotal: number;
}

export interface HashOptions {
  onProgress?: (p: HashProgress) => void;
  signal?: AbortSignal;
  /** Files up to this size are hashed whole with WebCrypto; larger ones in slices. */
  wholeFileLimit?: number;
  /** Slice size for large files. */
  sliceBytes?: number;
  /** Files hashed at once. */
  concurrency?: number;
}

const WHOLE_FILE_LIMIT = 8 * 1024 * 1024;
const SLICE_BYTES = 4 * 1024 * 1024;

/** Map key of a digest (hash and size both name a blob). */
export function digestKey(d: Digest): string {
  return `${d.hash}/${d.sizeBytes}`;
}

/** Why a path segment cannot be a name in a `Directory`, or undefined. */
export function badSegment(segment: string): string | undefined {
  if (segment === '') return 'empty path segment';
  if (segment === '.' || segment === '..') return `'${segment}' is not allowed`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(segment)) return 'contains a control character';
  return undefined;
}

const encoder = new TextEncoder();

/** Bytewise comparison of the UTF-8 encodings (not UTF-16 code units). */
export function compareBytewise(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

async function readBytes(blob: Blob): Promise<Uint8Array> {
  return new Uint8Array(await blob.arrayBuffer());
}

/** SHA-256 hex of a blob; large blobs are read slice by slice, never whole. */
export async function hashBlob(
  blob: Blob,
  onBytes: (n: number) => void = () => {},
  opts: Pick<HashOptions, 'wholeFileLimit' | 'sliceBytes' | 'signal'> = {},
): Promise<string> {
  if (blob.size <= (opts.wholeFileLimit ?? WHOLE_FILE_LIMIT)) {
    const hex = await sha256Hex(await readBytes(blob));
    onBytes(blob.size);
    return hex;
  }
  const slice = opts.sliceBytes ?? SLICE_BYTES;
  const h = new Sha256();
  for (let at = 0; at < blob.size; at += slice) {
    opts.signal?.throwIfAborted();
    const part = await readBytes(blob.slice(at, Math.min(at + slice, blob.size)));
    h.update(part);
    onBytes(part.length);
  }
  return h.hex();
}

interface DirNode {
  files: Map<string, Digest>;
  dirs: Map<string, DirNode>;
}

function newDir(): DirNode {
  return { files: new Map(), dirs: new Map() };
}

/** Puts a file into the nested folders, refusing bad names and clashes. */
function insert(root: DirNode, path: string, digest: Digest): void {
  const segments = path.split('/');
  segments.forEach((s) => {
    const bad = badSegment(s);
    if (bad !== undefined) throw new Error(`${path}: ${bad}`);
  });
  let dir = root;
  for (const s of segments.slice(0, -1)) {
    if (dir.files.has(s)) throw new Error(`${path}: '${s}' is both a file and a folder`);
    let next = dir.dirs.get(s);
    if (next === undefined) {
      next = newDir();
      dir.dirs.set(s, next);
    }
    dir = next;
  }
  const name = segments[segments.length - 1]!;
  if (dir.dirs.has(name)) throw new Error(`${path}: '${name}' is both a file and a folder`);
  if (dir.files.has(name)) throw new Error(`${path}: listed twice`);
  dir.files.set(name, digest);
}

/** Encodes a folder bottom-up, adding every `Directory` to `blobs`. */
async function encode(dir: DirNode, path: string, blobs: Map<string, TreeBlob>): Promise<Digest> {
  const byName = (a: [string, unknown], b: [string, unknown]) => compareBytewise(a[0], b[0]);
  const directories = [];
  for (const [name, sub] of [...dir.dirs].sort(byName)) {
    directories.push({ name, digest: await encode(sub, path === '' ? name : `${path}/${name}`, blobs) });
  }
  const files = [...dir.files].sort(byName).map(([name, digest]) => ({ name, digest, isExecutable: false }));
  const data = toBinary(DirectorySchema, create(DirectorySchema, { files, directories }));
  const digest = create(DigestSchema, { hash: await sha256Hex(data), sizeBytes: BigInt(data.length) });
  blobs.set(digestKey(digest), { kind: 'directory', digest, path: path === '' ? '/' : `${path}/`, data });
  return digest;
}

/** Hashes every file and builds the tree's `Directory` blobs. */
export async function buildTree(input: readonly WorkspaceFile[], opts: HashOptions = {}): Promise<Tree> {
  const files = [...input].sort((a, b) => compareBytewise(a.path, b.path));
  const progress: HashProgress = {
    filesHashed: 0,
    filesTotal: files.length,
    bytesHashed: 0,
    bytesTotal: files.reduce((n, f) => n + f.blob.size, 0),
  };
  const report = () => opts.onProgress?.({ ...progress });
  report();

  const digests: Digest[] = new Array<Digest>(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      const f = files[i]!;
      opts.signal?.throwIfAborted();
      const hash = await hashBlob(
        f.blob,
        (n) => {
          progress.bytesHashed += n;
          report();
        },
        opts,
      );
      digests[i] = create(DigestSchema, { hash, sizeBytes: BigInt(f.blob.size) });
      progress.filesHashed++;
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));

  const root = newDir();
  const blobs = new Map<string, TreeBlob>();
  files.forEach((f, i) => {
    const digest = digests[i]!;
    insert(root, f.path, digest);
    // Equal files share one blob (and one upload).
    if (!blobs.has(digestKey(digest))) blobs.set(digestKey(digest), { kind: 'file', digest, path: f.path, blob: f.blob });
  });
  const rootDigest = await encode(root, '', blobs);
  return { root: rootDigest, files: files.length, bytes: progress.bytesTotal, blobs, paths: files.map((f) => f.path) };
}
