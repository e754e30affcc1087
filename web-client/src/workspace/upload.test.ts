// @vitest-environment node
//
// The upload client against an in-process ContentService that keeps the
// contract's rules strictly (verifies every blob, 1 MiB chunks, 4 MiB
// batches, resumable offsets). The Chromium e2e test runs the same code
// against the real coordinator.
import { createHash } from 'node:crypto';
import { Code, ConnectError, createClient, createRouterTransport } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { ContentService, type Digest } from '../gen/testrunner/v1/content_pb';
import { buildTree, digestKey } from './tree';
import { uploadTree } from './upload';

const MiB = 1024 * 1024;

function contentServer(opts: { flaky?: boolean } = {}) {
  const stored = new Map<string, Uint8Array>();
  const partial = new Map<string, Uint8Array[]>();
  const calls = { find: 0, batch: 0, write: 0, batchBytes: [] as number[] };
  let writes = 0;
  const check = (d: Digest | undefined, data: Uint8Array) => {
    if (d === undefined) throw new ConnectError('digest: required', Code.InvalidArgument);
    const hex = createHash('sha256').update(data).digest('hex');
    if (hex !== d.hash || BigInt(data.length) !== d.sizeBytes) {
      throw new ConnectError('data: does not match its digest', Code.InvalidArgument);
    }
  };
  const transport = createRouterTransport(({ service }) => {
    service(ContentService, {
      findMissingBlobs(req) {
        calls.find++;
        return { missingBlobDigests: req.blobDigests.filter((d) => !stored.has(digestKey(d))) };
      },
      batchUploadBlobs(req) {
        calls.batch++;
        const total = req.requests.reduce((n, r) => n + r.data.length, 0);
        calls.batchBytes.push(total);
        if (total > 4 * MiB) throw new ConnectError('requests: over 4 MiB', Code.InvalidArgument);
        return {
          responses: req.requests.map((r) => {
            try {
              check(r.digest, r.data);
              stored.set(digestKey(r.digest!), r.data);
              return { digest: r.digest, code: 0 };
            } catch (e) {
              return { digest: r.digest, code: Code.InvalidArgument, message: (e as ConnectError).rawMessage };
            }
          }),
        };
      },
      writeBlob(req) {
        calls.write++;
        const key = digestKey(req.digest!);
        const size = Number(req.digest!.sizeBytes);
        if (req.data.length > MiB) throw new ConnectError('data: over 1 MiB', Code.InvalidArgument);
        if (stored.has(key)) return { committedSize: BigInt(size), complete: true };
        const parts = partial.get(key) ?? [];
        const have = parts.reduce((n, p) => n + p.length, 0);
        if (Number(req.offset) > have) throw new ConnectError('offset: leaves a gap', Code.OutOfRange);
        // A flaky link drops every other call: alternately before the
        // chunk is stored and after (only the answer is lost).
        const drop = opts.flaky === true ? writes++ % 4 : -1;
        if (drop === 1) throw new ConnectError('connection reset', Code.Unavailable);
        // Bytes already stored are ignored (the overlap of a resent chunk).
        const fresh = req.data.subarray(have - Number(req.offset));
        if (fresh.length > 0) parts.push(fresh);
        partial.set(key, parts);
        const now = have + fresh.length;
        if (drop === 3 && now < size) throw new ConnectError('connection reset', Code.Unavailable);
        if (now === size) {
          const all = new Uint8Array(size);
          let at = 0;
          for (const p of parts) all.set(p, (at += p.length) - p.length);
          partial.delete(key);
          check(req.digest, all);
          stored.set(key, all);
          return { committedSize: BigInt(size), complete: true };
        }
        return { committedSize: BigInt(now), complete: false };
      },
    });
  });
  return { client: createClient(ContentService, transport), stored, calls };
}

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * seed + 11) & 0xff);

describe('uploadTree', () => {
  it('uploads everything once, small blobs batched and a large file in 1 MiB chunks, then nothing the second time', async () => {
    const big = bytes(2 * MiB + 5, 7);
    const small = Array.from({ length: 40 }, (_, i) => ({ path: `pkg/m${i}.py`, blob: new Blob([bytes(150_000, i + 1)]) }));
    const tree = await buildTree([{ path: 'data/big.bin', blob: new Blob([big]) }, ...small]);
    const server = contentServer();
    const first = await uploadTree(server.client, tree);
    expect(first).toMatchObject({ blobsPresent: 0, blobsToSend: tree.blobs.size, blobsSent: tree.blobs.size });
    expect(first.bytesSent).toBe(first.bytesToSend);
    expect(server.stored.size).toBe(tree.blobs.size);
    expect(server.calls.write).toBe(3); // 1 MiB + 1 MiB + 5 bytes
    expect(Math.max(...server.calls.batchBytes)).toBeLessThanOrEqual(3 * MiB);
    expect(server.stored.get(digestKey(tree.root))).toBeDefined();

    const again = await uploadTree(server.client, tree);
    expect(again).toMatchObject({ blobsPresent: tree.blobs.size, filesPresent: 41, blobsToSend: 0, bytesSent: 0 });
  });

  it('sends only the changed file and its folders after a one-file change', async () => {
    const server = contentServer();
    const files = (v: string) => [
      { path: 'a/x.txt', blob: new Blob(['same']) },
      { path: 'b/y.txt', blob: new Blob([v]) },
    ];
    await uploadTree(server.client, await buildTree(files('one')));
    const p = await uploadTree(server.client, await buildTree(files('two')));
    // b/y.txt, b/ and the root
    expect(p).toMatchObject({ blobsToSend: 3, filesPresent: 1 });
  });

  it('resumes a large blob from what the server says it kept', async () => {
    const big = bytes(3 * MiB, 3);
    const server = contentServer({ flaky: true });
    const tree = await buildTree([{ path: 'big', blob: new Blob([big]) }]);
    const p = await uploadTree(server.client, tree);
    expect(p.bytesSent).toBe(p.bytesToSend);
    const key = [...tree.blobs.keys()].find((k) => k.endsWith(`/${big.length}`))!;
    expect(createHash('sha256').update(server.stored.get(key)!).digest('hex')).toBe(key.split('/')[0]);
  });

  it('fails naming the file when the server refuses a blob', async () => {
    const server = contentServer();
    const tree = await buildTree([{ path: 'src/a.py', blob: new Blob(['print(1)']) }]);
    // The file changed after hashing: its bytes no longer match the digest.
    const b = [...tree.blobs.values()].find((x) => x.kind === 'file')!;
    if (b.kind === 'file') b.blob = new Blob(['print(2)']);
    await expect(uploadTree(server.client, tree)).rejects.toThrow('src/a.py: data: does not match its digest');
  });
});
