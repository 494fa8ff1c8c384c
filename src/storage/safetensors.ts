// The safetensors format (8-byte header length, JSON header, raw little-endian data), which
// PyTorch, JAX and the Hugging Face tools read. Occam uses it for checkpoints, exported models
// and state sent over the wire; decoding validates everything and throws one clear error.

export type TensorData = Float32Array | Uint8Array | Int32Array;

export interface NamedTensor {
  name: string;
  shape: number[];
  data: TensorData;
}

const DTYPES = { F32: Float32Array, U8: Uint8Array, I32: Int32Array } as const;
type DType = keyof typeof DTYPES;

interface HeaderEntry {
  dtype: DType;
  shape: number[];
  data_offsets: [number, number];
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

export function encodeSafetensors(tensors: NamedTensor[], metadata: Record<string, string> = {}): Buffer {
  const { headerBytes, dataBytes } = encodeHeader(tensors, metadata);
  const out = Buffer.allocUnsafe(8 + headerBytes.length + dataBytes);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** The length of the file encodeSafetensors would write, without writing it. */
export function safetensorsBytes(tensors: NamedTensor[], metadata: Record<string, string> = {}): number {
  const { headerBytes, dataBytes } = encodeHeader(tensors, metadata);
  return 8 + headerBytes.length + dataBytes;
}

function encodeHeader(tensors: NamedTensor[], metadata: Record<string, string>): { headerBytes: Buffer; dataBytes: number } {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: dtypeOf(t.data), shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad so the data starts 8-byte aligned, as the reference implementation does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  return { headerBytes: Buffer.from(json, 'utf8'), dataBytes: offset };
}

export function decodeSafetensors(bytes: Uint8Array): { tensors: NamedTensor[]; metadata: Record<string, string> } {
  if (bytes.length < 8) throw new SafetensorsError(`too short (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.length - 8) throw new SafetensorsError(`header length ${headerLength} exceeds the ${bytes.length}-byte file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new SafetensorsError('header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsError('header is not an object');
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const entries = Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .map(([name, raw]) => ({ name, entry: checkEntry(name, raw, dataLength) }));
  checkDisjoint(entries);
  const tensors: NamedTensor[] = [];
  for (const { name, entry } of entries) {
    const [begin, end] = entry.data_offsets;
    // Copy into an aligned buffer: typed arrays need offsets that are multiples of their element size.
    const copy = new Uint8Array(end - begin);
    copy.set(bytes.subarray(dataStart + begin, dataStart + end));
    const data = new DTYPES[entry.dtype](copy.buffer, 0, (end - begin) / DTYPES[entry.dtype].BYTES_PER_ELEMENT);
    tensors.push({ name, shape: entry.shape, data });
  }
  return { tensors, metadata: checkMetadata(header.__metadata__) };
}

/**
 * No two tensors may share bytes: entries that alias the same data would make decoding copy it
 * many times over (a small file decoding to a large state), and no writer produces them.
 */
function checkDisjoint(entries: { name: string; entry: HeaderEntry }[]): void {
  const spans = entries.filter((e) => e.entry.data_offsets[1] > e.entry.data_offsets[0]);
  spans.sort((a, b) => a.entry.data_offsets[0] - b.entry.data_offsets[0]);
  for (let i = 1; i < spans.length; i++) {
    const [previous, next] = [spans[i - 1], spans[i]];
    if (next.entry.data_offsets[0] < previous.entry.data_offsets[1]) {
      throw new SafetensorsError(
        `tensors '${previous.name}' and '${next.name}' overlap (bytes ${previous.entry.data_offsets.join('..')} and ${next.entry.data_offsets.join('..')})`,
      );
    }
  }
}

function checkEntry(name: string, raw: unknown, dataLength: number): HeaderEntry {
  const entry = raw as Partial<HeaderEntry> | null;
  if (!entry || typeof entry !== 'object') throw new SafetensorsError(`tensor '${name}' has no header entry`);
  if (typeof entry.dtype !== 'string' || !(entry.dtype in DTYPES))
    throw new SafetensorsError(`tensor '${name}' has unsupported dtype ${String(entry.dtype)}`);
  const shape = entry.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
    throw new SafetensorsError(`tensor '${name}' has an invalid shape`);
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o))) {
    throw new SafetensorsError(`tensor '${name}' has invalid data offsets`);
  }
  const [begin, end] = offsets;
  const size = shape.reduce((a, b) => a * b, 1) * DTYPES[entry.dtype].BYTES_PER_ELEMENT;
  if (begin < 0 || end < begin || end > dataLength)
    throw new SafetensorsError(`tensor '${name}' lies outside the data (${begin}..${end} of ${dataLength} bytes)`);
  if (end - begin !== size) throw new SafetensorsError(`tensor '${name}' has ${end - begin} bytes, its shape [${shape}] needs ${size}`);
  return entry as HeaderEntry;
}

function checkMetadata(raw: unknown): Record<string, string> {
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null) throw new SafetensorsError('__metadata__ is not an object');
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') throw new SafetensorsError(`metadata '${key}' is not a string`);
  }
  return raw as Record<string, string>;
}

function dtypeOf(data: TensorData): DType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Int32Array) return 'I32';
  return 'U8';
}
