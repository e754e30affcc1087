// @vitest-environment node
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Sha256, sha256Hex } from './sha256';

const enc = new TextEncoder();

function streamed(data: Uint8Array, piece: number): string {
  const h = new Sha256();
  for (let i = 0; i < data.length; i += piece) h.update(data.subarray(i, i + piece));
  return h.hex();
}

describe('Sha256', () => {
  // FIPS 180-4 / NIST example vectors.
  const vectors: Array<[string, string]> = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
    [
      'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
    ],
  ];
  it.each(vectors)('hashes %j as the standard says', (text, hex) => {
    expect(new Sha256().update(enc.encode(text)).hex()).toBe(hex);
  });

  it('hashes a million "a" fed in odd pieces', () => {
    const data = new Uint8Array(1_000_000).fill(0x61);
    expect(streamed(data, 9973)).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('agrees with WebCrypto and node at every length around the block and padding edges', async () => {
    for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
      const want = createHash('sha256').update(data).digest('hex');
      expect(streamed(data, 1), `n=${n} byte by byte`).toBe(want);
      expect(streamed(data, 13), `n=${n} in 13s`).toBe(want);
      expect(await sha256Hex(data), `n=${n} WebCrypto`).toBe(want);
    }
  });

  it('refuses to be used after hex()', () => {
    const h = new Sha256();
    h.hex();
    expect(() => h.update(new Uint8Array(1))).toThrow();
  });
});
