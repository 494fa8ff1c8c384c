// The wire contract has one declaration: the TypeScript message types are generated from
// proto/occam.proto, and the committed file must be what the generator writes today.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GENERATED, generateProtocolTypes } from '../scripts/gen-protocol.ts';
import { REPLY_KIND } from '../src/wire/protocol.ts';

describe('the protocol types', () => {
  it('are generated from proto/occam.proto and up to date (npm run gen:protocol)', () => {
    expect(readFileSync(GENERATED, 'utf8')).toBe(generateProtocolTypes());
  });

  it('pair every command with its reply as the Worker service declares', () => {
    expect(REPLY_KIND).toEqual({
      welcome: 'ready',
      formRing: 'ack',
      loadState: 'stateReport',
      runSteps: 'stepsDone',
      evaluate: 'evalResult',
      computeThresholds: 'thresholds',
      prune: 'stateReport',
      uploadState: 'stateUpload',
    });
  });
});
