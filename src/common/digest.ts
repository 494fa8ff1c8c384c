// Short content digests: how replicas, commits and uploads prove they hold the same bytes.
import { createHash } from 'node:crypto';

/** A short digest of arrays' bytes; equal digests mean bit-identical contents. */
export function digestArrays(arrays: ArrayBufferView[]): string {
  const hash = createHash('sha256');
  for (const array of arrays) hash.update(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
  return hash.digest('hex').slice(0, 16);
}
