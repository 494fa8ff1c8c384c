// Ring all-reduce (reduce-scatter, then all-gather), chunked and pipelined: each worker sends to
// the next rank and receives from the previous one, and forwards every chunk as soon as it has
// added (or copied) it. Each worker moves 2(n−1)/n of the buffer. The final value of every
// segment is computed once, by one worker, and copied to the others, so all replicas end
// bit-identical. Segments are granules of the whole vector dealt round the ranks, so a vector summed
// in buckets (a Placement each) adds every value in the same order as summed at once. Ops queue.
// Transport-agnostic: the caller delivers frames (whole, or as header and payload) and carries sent
// ones (header and payload), saying when each is written. A received frame is read before
// receiveParts returns, and what travels on is this rank's own buffer, so a link may reuse its
// receive memory. A frame that this op cannot have produced (bad header, length, op id, or a
// repeat) fails the op.
// Values travel as float32, or as bf16 with float32 sums (half the bytes, 8-bit mantissas).
import { addToBf16, decodeBf16, encodeBf16 } from './bf16.ts';
import type { Collective, CollectiveStats, Placement } from '../common/collective.ts';
import { addInPlace } from '../common/simd/f32.ts';

/** Frame header: op id (u32), phase (u16), iteration (u16), segment (u32), chunk (u32). */
export const RING_HEADER_BYTES = 16;
/**
 * Floats per frame unless a ring is told otherwise: 1 MiB. On loopback, 64 MiB all-reduced about
 * a quarter faster than in 256 KiB frames (fewer messages for `ws` to allocate and copy), 3 and
 * 16 MiB as fast, 1 MiB a little slower; a vector still has at least one frame per rank.
 */
export const DEFAULT_CHUNK_FLOATS = 262_144;
const REDUCE_SCATTER = 0;
const ALL_GATHER = 1;

export class RingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RingError';
  }
}

export type WireFormat = 'f32' | 'bf16';

export interface RingOptions {
  /** Floats per frame at most: a long vector is cut into granules this size, pipelined round the ring. */
  chunkFloats: number;
  /** No frame from the previous rank for this long is a stall: onStall's to judge, or a failure. */
  timeoutMs: number;
  /**
   * Told of each stall (the wait so far) while the op keeps waiting: where a coordinator knows
   * whether the previous rank is busy, lost or cut off, it decides. Without it a stall fails the op.
   */
  onStall?: (waitedMs: number) => void;
  /** How values travel (f32 when absent); every rank of a ring must use the same. */
  wireFormat?: WireFormat;
}

/** A frame kept for an op not yet started. */
interface Frame {
  header: Buffer;
  payload: Buffer;
}

/** An op's chunks: its parts of the whole vector's granules, granule q belonging to segment q mod n. */
interface ChunkLayout {
  /** Index of the buffer's first value in the whole vector. */
  offset: number;
  granuleFloats: number;
  /** The whole vector's granule that chunk 0 is part of. */
  firstGranule: number;
  count: number;
}

interface Operation {
  id: number;
  buffer: Float32Array;
  layout: ChunkLayout;
  expected: number;
  received: number;
  /** (phase, iteration, chunk) of every frame applied: each arrives exactly once. */
  seen: Set<string>;
  bytesSent: number;
  /** Frames handed to the link and not yet written: the op ends once none are (they are views of its buffer). */
  unwritten: number;
  startMs: number;
  firstFrameMs: number;
  timer: NodeJS.Timeout | null;
  resolve(stats: CollectiveStats): void;
  reject(error: Error): void;
}

export class RingAllReduce implements Collective {
  private nextOpId = 1;
  private current: Operation | null = null;
  /** Ops called while one was in progress, in call order. */
  private queue: Operation[] = [];
  /** Frames that arrived for an op this worker has not started yet (the neighbour is ahead). */
  private early: Frame[] = [];
  private failure: Error | null = null;
  private readonly bf16: boolean;
  /** bf16: a chunk's float32 sums, between decoding a frame and encoding it again. */
  private readonly scratch: Float32Array;
  /** bf16: the op's chunks as they travel on, encoded, each at its chunk's place; reused by the next op, which starts once they are written. */
  private encoded = Buffer.alloc(0);

  constructor(
    readonly rank: number,
    readonly world: number,
    /**
     * Carries one frame as [header, payload], so the payload need not be copied, and calls
     * `written` once the link no longer needs the parts (written out, or copied).
     */
    private readonly sendToNext: (parts: Buffer[], written: () => void) => void,
    private readonly options: RingOptions,
  ) {
    this.bf16 = options.wireFormat === 'bf16';
    this.scratch = new Float32Array(this.bf16 ? options.chunkFloats : 0);
  }

  /** Bytes of one value on the wire. */
  private get valueBytes(): number {
    return this.bf16 ? 2 : 4;
  }

  /** Sums `buffer` over all ranks, in place. Every rank must call it with equal lengths and placements in the same order. */
  allReduce(buffer: Float32Array, placement: Placement = { offset: 0, totalLength: buffer.length }): Promise<CollectiveStats> {
    if (this.failure) return Promise.reject(this.failure);
    const { offset, totalLength } = placement;
    if (!Number.isInteger(offset) || offset < 0 || offset + buffer.length > totalLength)
      return Promise.reject(new RingError(`a buffer of ${buffer.length} values cannot lie at ${offset} in a vector of ${totalLength}`));
    const id = this.nextOpId++;
    if (this.world === 1) return Promise.resolve({ bytesSent: 0, waitMs: 0, transferMs: 0 });
    return new Promise<CollectiveStats>((resolve, reject) => {
      const layout = this.layoutOf(buffer.length, placement);
      const op: Operation = {
        id,
        buffer,
        layout,
        expected: 0,
        received: 0,
        seen: new Set(),
        bytesSent: 0,
        unwritten: 0,
        startMs: 0,
        firstFrameMs: -1,
        timer: null,
        resolve,
        reject,
      };
      op.expected = this.expectedFrames(op);
      this.queue.push(op);
      if (!this.current) this.startNext();
    });
  }

  /** Starts the oldest queued op: sends this rank's own chunks, then applies frames that came early. */
  private startNext(): void {
    const op = this.queue.shift();
    if (!op) return;
    this.current = op;
    op.startMs = performance.now();
    if (this.bf16 && this.encoded.length < 2 * op.buffer.length) this.encoded = Buffer.allocUnsafeSlow(2 * op.buffer.length);
    this.armTimer(op);
    try {
      for (let chunk = 0; chunk < op.layout.count; chunk++) {
        if (this.segmentOf(op, chunk) === this.rank) this.send(op, REDUCE_SCATTER, 0, this.rank, chunk);
      }
      const early = this.early.filter((f) => f.header.readUInt32LE(0) === op.id);
      this.early = this.early.filter((f) => f.header.readUInt32LE(0) !== op.id);
      for (const frame of early) this.receiveParts(frame.header, frame.payload);
      this.finishIfDone(op);
    } catch (error) {
      this.fail(error as Error);
    }
  }

  /** A whole frame from the previous rank, header then payload. Invalid frames fail the current op with a RingError. */
  receive(frame: Buffer): void {
    if (frame.length < RING_HEADER_BYTES) this.fail(new RingError(`malformed ring frame of ${frame.length} bytes`));
    else this.receiveParts(frame.subarray(0, RING_HEADER_BYTES), frame.subarray(RING_HEADER_BYTES));
  }

  /**
   * A frame from the previous rank as its header and its payload (as a link carries them: no copy
   * to join them). Both are read before this returns (a frame kept for a later op is copied).
   */
  receiveParts(header: Buffer, payload: Buffer): void {
    if (this.failure) return;
    if (header.length !== RING_HEADER_BYTES || payload.length % this.valueBytes !== 0) {
      this.fail(new RingError(`malformed ring frame of ${header.length} + ${payload.length} bytes`));
      return;
    }
    const id = header.readUInt32LE(0);
    const op = this.current;
    if (!op || id !== op.id) {
      // Every frame of a finished op has arrived (each exactly once), so an older id is bogus. A
      // newer one is the previous rank running ahead (by several ops when some are empty): keep it.
      if (id < (op?.id ?? this.nextOpId))
        this.fail(new RingError(`ring frame for op ${id}, which is over (this rank is at op ${op?.id ?? this.nextOpId})`));
      else if (this.early.length >= 4 * this.world * 1024) this.fail(new RingError('too many ring frames ahead of this rank'));
      else this.early.push({ header: Buffer.from(header), payload: Buffer.from(payload) });
      return;
    }
    try {
      this.apply(op, header, payload);
      this.finishIfDone(op);
    } catch (error) {
      this.fail(error as Error);
    }
  }

  /** Fails the op in progress (and every later one): a neighbour is gone or the ring re-forms. */
  abort(error: Error): void {
    this.fail(error);
  }

  private apply(op: Operation, header: Buffer, payload: Buffer): void {
    const phase = header.readUInt16LE(4);
    const iteration = header.readUInt16LE(6);
    const segment = header.readUInt32LE(8);
    const chunk = header.readUInt32LE(12);
    const n = this.world;
    const expectedSegment = phase === REDUCE_SCATTER ? mod(this.rank - iteration - 1, n) : mod(this.rank - iteration, n);
    if (phase > ALL_GATHER || iteration > n - 2 || segment !== expectedSegment) {
      throw new RingError(`unexpected ring frame (phase ${phase}, iteration ${iteration}, segment ${segment})`);
    }
    if (chunk >= op.layout.count || this.segmentOf(op, chunk) !== segment)
      throw new RingError(`ring frame for chunk ${chunk}, which segment ${segment} of this op does not have`);
    const [start, end] = this.chunkRange(op, chunk);
    const count = payload.length / this.valueBytes;
    if (start >= end || count !== end - start)
      throw new RingError(`ring frame for chunk ${chunk} of segment ${segment} has ${count} values, expected ${end - start}`);
    const key = `${phase}.${iteration}.${chunk}`;
    if (op.seen.has(key)) throw new RingError(`repeated ring frame (phase ${phase}, iteration ${iteration}, chunk ${chunk})`);
    op.seen.add(key);
    if (op.firstFrameMs < 0) op.firstFrameMs = performance.now();
    if (this.bf16) this.applyBf16(op, header, payload, phase, iteration, start, count);
    else this.applyF32(op, header, payload, phase, iteration, start, count);
    op.received++;
    this.armTimer(op);
  }

  private applyF32(op: Operation, header: Buffer, payload: Buffer, phase: number, iteration: number, start: number, count: number): void {
    const n = this.world;
    if (payload.byteOffset % 4 !== 0) payload = Buffer.from(payload); // a fresh Buffer is aligned
    const values = new Float32Array(payload.buffer, payload.byteOffset, count);
    const target = op.buffer.subarray(start, start + count);
    if (phase === REDUCE_SCATTER) {
      // The partial sum gains this rank's values (target + values: the same float32 sum either
      // way round) and travels on from this rank's buffer; the last iteration completes this
      // rank's segment, which it keeps and sends round as the first all-gather frame.
      addInPlace(target, values);
      const completes = iteration === n - 2;
      this.forward(op, header, target, completes ? ALL_GATHER : REDUCE_SCATTER, completes ? 0 : iteration + 1);
    } else {
      target.set(values);
      if (iteration < n - 2) this.forward(op, header, target, ALL_GATHER, iteration + 1);
    }
  }

  /**
   * As applyF32, with bf16 values: sums are float32, encoded into `encoded` to travel on. The rank
   * that completes a segment keeps the bf16-rounded sum, which is exactly what the others receive.
   */
  private applyBf16(op: Operation, header: Buffer, payload: Buffer, phase: number, iteration: number, start: number, count: number): void {
    const n = this.world;
    if (payload.byteOffset % 2 !== 0) payload = Buffer.from(payload); // a fresh Buffer is aligned
    const values = new Uint16Array(payload.buffer, payload.byteOffset, count);
    const target = op.buffer.subarray(start, start + count);
    const onward = new Uint16Array(this.encoded.buffer, this.encoded.byteOffset + 2 * start, count);
    if (phase === REDUCE_SCATTER) {
      onward.set(values);
      addToBf16(onward, target, this.scratch);
      const completes = iteration === n - 2;
      if (completes) decodeBf16(onward, target);
      this.forward(op, header, onward, completes ? ALL_GATHER : REDUCE_SCATTER, completes ? 0 : iteration + 1);
    } else {
      decodeBf16(values, target);
      if (iteration < n - 2) {
        onward.set(values);
        this.forward(op, header, onward, ALL_GATHER, iteration + 1);
      }
    }
  }

  /** Sends a received frame on to the next rank under a new phase and iteration, its values from this rank's memory. */
  private forward(op: Operation, received: Buffer, values: Float32Array | Uint16Array, phase: number, iteration: number): void {
    const header = Buffer.from(received);
    header.writeUInt16LE(phase, 4);
    header.writeUInt16LE(iteration, 6);
    this.write(op, header, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  }

  /**
   * Sends one chunk of this rank's own buffer. As float32 the payload goes as a view, without a
   * copy: the buffer region is not written again before the chunk has travelled the ring and come
   * back. As bf16 it is encoded into `encoded`, at the chunk's place, for the same reason.
   */
  private send(op: Operation, phase: number, iteration: number, segment: number, chunk: number): void {
    const [start, end] = this.chunkRange(op, chunk);
    const header = Buffer.allocUnsafe(RING_HEADER_BYTES);
    header.writeUInt32LE(op.id, 0);
    header.writeUInt16LE(phase, 4);
    header.writeUInt16LE(iteration, 6);
    header.writeUInt32LE(segment, 8);
    header.writeUInt32LE(chunk, 12);
    const values = op.buffer.subarray(start, end);
    let payload = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    if (this.bf16) {
      payload = this.encoded.subarray(2 * start, 2 * end);
      encodeBf16(values, new Uint16Array(payload.buffer, payload.byteOffset, values.length));
    }
    this.write(op, header, payload);
  }

  /** Hands one frame to the link; the op is not over until the link has written it. */
  private write(op: Operation, header: Buffer, payload: Buffer): void {
    op.bytesSent += header.length + payload.length;
    op.unwritten++;
    this.sendToNext([header, payload], () => {
      op.unwritten--;
      this.finishIfDone(op);
    });
  }

  private finishIfDone(op: Operation): void {
    if (this.current !== op || op.received < op.expected || op.unwritten > 0) return;
    if (op.timer) clearTimeout(op.timer);
    this.current = null;
    const now = performance.now();
    const first = op.firstFrameMs < 0 ? now : op.firstFrameMs;
    op.resolve({ bytesSent: op.bytesSent, waitMs: first - op.startMs, transferMs: now - first });
    this.startNext();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const op = this.current;
    const queued = this.queue;
    this.current = null;
    this.queue = [];
    this.early = [];
    if (op?.timer) clearTimeout(op.timer);
    for (const failed of op ? [op, ...queued] : queued) failed.reject(this.failure);
  }

  private armTimer(op: Operation, sinceMs = performance.now()): void {
    if (op.timer) clearTimeout(op.timer);
    const timer = setTimeout(() => {
      // Frames that came while this thread was busy are read first: the silence is the peer's only if none did.
      setImmediate(() => {
        if (op.timer !== timer || this.current !== op) return;
        const { onStall, timeoutMs } = this.options;
        if (!onStall) return this.fail(new RingError(`no data from the previous rank for ${timeoutMs} ms`));
        onStall(performance.now() - sinceMs);
        this.armTimer(op, sinceMs);
      });
    }, this.options.timeoutMs);
    op.timer = timer;
  }

  /**
   * Granules of the whole vector: a multiple of n of them, as equal as can be and at most a frame
   * each, dealt round the ranks. A function of the whole's length, not of the buffer's.
   */
  private layoutOf(length: number, { offset, totalLength }: Placement): ChunkLayout {
    const perRank = Math.max(1, Math.ceil(totalLength / (this.world * this.options.chunkFloats)));
    const granuleFloats = Math.max(1, Math.ceil(totalLength / (this.world * perRank)));
    const firstGranule = Math.floor(offset / granuleFloats);
    const count = length === 0 ? 0 : Math.floor((offset + length - 1) / granuleFloats) - firstGranule + 1;
    return { offset, granuleFloats, firstGranule, count };
  }

  private segmentOf(op: Operation, chunk: number): number {
    return (op.layout.firstGranule + chunk) % this.world;
  }

  /** Frames this rank receives in one op: every segment but its own (reduce-scatter) and but rank+1's (all-gather). */
  private expectedFrames(op: Operation): number {
    let frames = 0;
    for (let chunk = 0; chunk < op.layout.count; chunk++) {
      const segment = this.segmentOf(op, chunk);
      if (segment !== this.rank) frames++;
      if (segment !== (this.rank + 1) % this.world) frames++;
    }
    return frames;
  }

  /** [start, end) of a chunk in the op's buffer. */
  private chunkRange(op: Operation, chunk: number): [number, number] {
    const { offset, granuleFloats, firstGranule } = op.layout;
    const granuleStart = (firstGranule + chunk) * granuleFloats;
    return [Math.max(granuleStart - offset, 0), Math.min(granuleStart + granuleFloats - offset, op.buffer.length)];
  }
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}
