// The one thing the training step needs from the cluster: sum a buffer over every rank. The ring
// (wire/ring.ts) provides it between processes and in memory; a single replica needs no peers.

export interface CollectiveStats {
  bytesSent: number;
  /** From the start until the first data of the previous rank arrived: waiting for stragglers. */
  waitMs: number;
  /** The rest: moving and summing data. */
  transferMs: number;
}

export interface Collective {
  /** Sums `buffer` over all ranks, in place; every rank calls it with equal lengths in the same order. */
  allReduce(buffer: Float32Array): Promise<CollectiveStats>;
}

/** The collective of a world of one: the sum is the buffer itself. */
export const SOLO: Collective = {
  allReduce: () => Promise.resolve({ bytesSent: 0, waitMs: 0, transferMs: 0 }),
};
