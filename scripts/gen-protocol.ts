// Generates src/wire/messages.generated.ts from proto/occam.proto with protobufjs's own parser:
// one TypeScript interface per message, the Envelope's kinds, and the command → reply map of the
// Worker service. `npm run gen:protocol` rewrites the file; `--check` fails when it is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const PROTO = fileURLToPath(new URL('../proto/occam.proto', import.meta.url));
export const GENERATED = fileURLToPath(new URL('../src/wire/messages.generated.ts', import.meta.url));

const SCALARS: Record<string, string> = {
  string: 'string',
  bool: 'boolean',
  bytes: 'Uint8Array',
  double: 'number',
  float: 'number',
  int32: 'number',
  uint32: 'number',
  sint32: 'number',
  fixed32: 'number',
  sfixed32: 'number',
  // Decoded with `longs: Number`: every count Occam sends is far below 2^53.
  int64: 'number',
  uint64: 'number',
  sint64: 'number',
  fixed64: 'number',
  sfixed64: 'number',
};

/** The generated module's text. */
export function generateProtocolTypes(): string {
  const root = protobuf.loadSync(PROTO);
  const pkg = root.lookup('occam.v1') as protobuf.Namespace;
  const types = pkg.nestedArray.filter((n): n is protobuf.Type => n instanceof protobuf.Type);
  const envelope = pkg.lookupType('Envelope');
  const service = pkg.lookupService('Worker');
  const lines = ['// Generated from proto/occam.proto by scripts/gen-protocol.ts: do not edit. `npm run gen:protocol` rewrites it.', ''];
  for (const type of types) {
    if (type === envelope) continue;
    const fields = type.fieldsArray.map((f) => `  ${f.name}: ${fieldType(f)};`);
    lines.push(`export interface ${type.name} {`, ...fields, '}', '');
  }
  const body = envelope.oneofs.body.fieldsArray;
  lines.push('/** Every message an Envelope carries, by the name of its field. */', 'export interface Messages {');
  for (const f of body) lines.push(`  ${f.name}: ${f.type};`);
  lines.push('}', '');
  const kindOf = (typeName: string) => {
    const field = body.find((f) => f.type === typeName);
    if (!field) throw new Error(`Worker service uses ${typeName}, which no Envelope field carries`);
    return field.name;
  };
  lines.push('/** The reply each command expects (the Worker service of the proto). */', 'export const REPLY_KIND = {');
  for (const method of service.methodsArray) lines.push(`  ${kindOf(method.requestType)}: '${kindOf(method.responseType)}',`);
  lines.push('} as const;', '');
  return lines.join('\n');
}

function fieldType(field: protobuf.Field): string {
  const base = SCALARS[field.type] ?? field.type;
  return field.repeated ? `${base}[]` : base;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = generateProtocolTypes();
  if (process.argv.includes('--check')) {
    if (readFileSync(GENERATED, 'utf8') !== text) {
      console.error(`${GENERATED} is stale: run npm run gen:protocol`);
      process.exit(1);
    }
  } else {
    writeFileSync(GENERATED, text);
  }
}
