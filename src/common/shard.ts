// How n ranks split a range of length items: contiguous, in rank order, sizes differing by at
// most one. Global batches, evaluation splits and ring segments are all cut this way.

/** [start, end) of rank `rank`'s share of `length` items over `world` ranks. */
export function shardRange(length: number, rank: number, world: number): [number, number] {
  return [Math.floor((rank * length) / world), Math.floor(((rank + 1) * length) / world)];
}
