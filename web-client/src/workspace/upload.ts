// Sends a workspace tree to the coordinator's ContentService: asks which
// blobs are missing, then uploads only those, small ones together with
// BatchUploadBlobs and large ones in 1 MiB WriteBlob chunks, reading each
// file slice by slice (a large file is never held whole).

import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import {
  BatchUploadBlobsRequest_RequestSchema,
  type BatchUploadBlobsRequest_Request,
  type ContentService,
} from '../gen/testrunner/v1/content_pb';
import { digestKey, type Tree, type TreeBlob } from './tree';

export interface UploadProgress {
  /** Blobs (files and folders) in the tree. */
  blobsTotal: number;
  /** Blobs the coordinator already had. */
  blobsPresent: number;
  /** Files (not folders) the coordinator already had, and their bytes. */
  filesPresent: number;
  bytesPresent: number;
  /** Blobs and bytes to send (files and folders). */
  blobsToSend: number;
  bytesToSend: number;
  /** Sent so far. */
  blobsSent: number;
  bytesSent: number;
}

export interface UploadOptions {
  onProgress?: (p: UploadProgress) => void;
  signal?: AbortSignal;
  /** Blobs up to this size go into BatchUploadBlobs. */
  batchBlobLimit?: number;
  /** Data per BatchUploadBlobs request (the contract allows 4 MiB). */
  batchBytes?: number;
  /** WriteBlob chunk (the contract allows 1 MiB). */
  chunkBytes?: number;
}

/** Digests per FindMissingBlobs call (the contract's limit). */
const FIND_BATCH = 10_000;
const CHUNK = 1024 * 1024;
const BATCH_BYTES = 3 * 1024 * 1024;

async function bytesOf(b: TreeBlob, from = 0, to?: number): Promise<Uint8Array> {
  if (b.kind === 'directory') return b.data.subarray(from, to);
  return new Uint8Array(await b.blob.slice(from, to).arrayBuffer());
}

/** Which of the tree's blobs the coordinator lacks. */
export async function findMissing(
  client: Client<typeof ContentService>,
  tree: Tree,
  signal?: AbortSignal,
): Promise<TreeBlob[]> {
  const all = [...tree.blobs.values()];
  const missing: TreeBlob[] = [];
  for (let i = 0; i < all.length; i += FIND_BATCH) {
    const part = all.slice(i, i + FIND_BATCH);
    const res = await retrying(() => client.findMissingBlobs({ blobDigests: part.map((b) => b.digest) }, { signal }), signal);
    for (const d of res.missingBlobDigests) {
      const b = tree.blobs.get(digestKey(d));
      if (b !== undefined) missing.push(b);
    }
  }
  return missing;
}

function what(b: TreeBlob): string {
  return b.kind === 'file' ? b.path : `folder ${b.path}`;
}

/** Codes after which the same call may simply be made again (uploads are idempotent). */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Internal, Code.Unknown]);
/** Attempts per call (or per chunk) before giving up. */
const ATTEMPTS = 5;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });
}

/** Runs an idempotent call, again after a transient failure (a dropped connection). */
async function retrying<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const ce = ConnectError.from(err);
      if (signal?.aborted || !TRANSIENT.has(ce.code) || attempt >= ATTEMPTS) throw err;
      await sleep(100 * 2 ** attempt, signal);
    }
  }
}

/**
 * Uploads one large blob in chunks. After a dropped call the same chunk is
 * sent again (bytes the coordinator already kept are ignored); after
 * OUT_OF_RANGE (it lost the partial upload, say on a restart) the upload
 * starts over from 0.
 */
async function writeBlob(
  client: Client<typeof ContentService>,
  b: TreeBlob,
  chunk: number,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const size = Number(b.digest.sizeBytes);
  let offset = 0;
  let reported = 0;
  let restarts = 0;
  for (;;) {
    const data = await bytesOf(b, offset, Math.min(offset + chunk, size));
    let res;
    try {
      res = await retrying(() => client.writeBlob({ digest: b.digest, offset: BigInt(offset), data }, { signal }), signal);
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.OutOfRange && offset > 0 && ++restarts < ATTEMPTS) {
        offset = 0;
        continue;
      }
      throw new ConnectError(`${what(b)}: ${ce.rawMessage}`, ce.code);
    }
    const committed = Number(res.committedSize);
    // Progress only counts bytes the coordinator has, once each.
    if (committed > reported) {
      onBytes(committed - reported);
      reported = committed;
    }
    if (res.complete) return;
    if (committed >= size) {
      // All bytes arrived but the blob was not accepted: they do not hash to it.
      throw new Error(`${what(b)}: the coordinator did not accept the uploaded bytes`);
    }
    if (committed <= offset && ++restarts >= ATTEMPTS) {
      throw new Error(`${what(b)}: the coordinator keeps no bytes at offset ${offset}`);
    }
    offset = committed;
  }
}

/** Uploads what is missing; resolves to the final progress. */
export async function uploadTree(
  client: Client<typeof ContentService>,
  tree: Tree,
  opts: UploadOptions = {},
): Promise<UploadProgress> {
  const batchLimit = opts.batchBlobLimit ?? CHUNK;
  const batchBytes = opts.batchBytes ?? BATCH_BYTES;
  const chunk = opts.chunkBytes ?? CHUNK;
  const missing = await findMissing(client, tree, opts.signal);
  const missingKeys = new Set(missing.map((b) => digestKey(b.digest)));
  const present = [...tree.blobs.values()].filter((b) => !missingKeys.has(digestKey(b.digest)));
  const p: UploadProgress = {
    blobsTotal: tree.blobs.size,
    blobsPresent: present.length,
    filesPresent: present.filter((b) => b.kind === 'file').length,
    bytesPresent: present.reduce((n, b) => n + (b.kind === 'file' ? Number(b.digest.sizeBytes) : 0), 0),
    blobsToSend: missing.length,
    bytesToSend: missing.reduce((n, b) => n + Number(b.digest.sizeBytes), 0),
    blobsSent: 0,
    bytesSent: 0,
  };
  const report = () => opts.onProgress?.({ ...p });
  report();

  // Folders last: a tree is usable only once everything below it is there.
  const small = missing.filter((b) => Number(b.digest.sizeBytes) <= batchLimit);
  const large = missing.filter((b) => Number(b.digest.sizeBytes) > batchLimit);

  for (const b of large) {
    opts.signal?.throwIfAborted();
    await writeBlob(client, b, chunk, (n) => ((p.bytesSent += n), report()), opts.signal);
    p.blobsSent++;
    report();
  }

  let batch: TreeBlob[] = [];
  let batchSize = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const requests: BatchUploadBlobsRequest_Request[] = [];
    for (const b of batch) {
      requests.push(create(BatchUploadBlobsRequest_RequestSchema, { digest: b.digest, data: await bytesOf(b) }));
    }
    const res = await retrying(() => client.batchUploadBlobs({ requests }, { signal: opts.signal }), opts.signal);
    res.responses.forEach((r, i) => {
      // 0 is OK; anything else is a gRPC code for this blob alone.
      if (r.code !== 0) {
        const b = batch[i];
        const name = b !== undefined ? what(b) : r.digest !== undefined ? digestKey(r.digest) : `blob ${i}`;
        throw new ConnectError(`${name}: ${r.message}`, r.code as Code);
      }
    });
    p.blobsSent += batch.length;
    p.bytesSent += batchSize;
    report();
    batch = [];
    batchSize = 0;
  };
  // Files first, then folders, so the tree's parts arrive before it.
  const ordered = [...small.filter((b) => b.kind === 'file'), ...small.filter((b) => b.kind === 'directory')];
  for (const b of ordered) {
    opts.signal?.throwIfAborted();
    const size = Number(b.digest.sizeBytes);
    if (batch.length > 0 && batchSize + size > batchBytes) await flush();
    batch.push(b);
    batchSize += size;
  }
  await flush();
  return p;
}
