// The one thing the training step needs from the cluster: sum a buffer over every rank. The ring
// (wire/ring.ts) provides it between processes and in memory; a single replica needs no peers.

export interface CollectiveStats {
  bytesSent: number;
  /** From the start until the first data of the previous rank arrived: waiting for stragglers. */
  waitMs: number;
  /** The rest: moving and summing data. */
  transferMs: number;
}

/**
 * Where a buffer lies in the whole vector a step sums, when the vector goes in buckets: each
 * element's summation order follows from its index in the whole, so summing in buckets of any
 * size gives the bits of summing the whole at once.
 */
export interface Placement {
  /** Index of the buffer's first value in the whole vector. */
  offset: number;
  /** Values in the whole vector. */
  totalLength: number;
}

export interface Collective {
  /**
   * Sums `buffer` over all ranks, in place; every rank calls it with equal lengths and placements
   * in the same order. Calls made while one is in progress wait their turn (first come, first served).
   */
  allReduce(buffer: Float32Array, placement?: Placement): Promise<CollectiveStats>;
}

/** The collective of a world of one: the sum is the buffer itself. */
export const SOLO: Collective = {
  allReduce: () => Promise.resolve({ bytesSent: 0, waitMs: 0, transferMs: 0 }),
};
