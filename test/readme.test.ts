// The README's settings table is the config schema's (scripts/gen-readme.ts writes it), so a
// setting added, renamed or re-described cannot leave the front door out of date.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, flagName } from '../src/config.ts';
import { README, withSettingsTable } from '../scripts/gen-readme.ts';

describe('README settings table', () => {
  it('is current with the config schema (run `npm run gen:readme` after changing a setting)', () => {
    const readme = readFileSync(README, 'utf8');
    expect(readme).toBe(withSettingsTable(readme));
    for (const key of CONFIG_KEYS) expect(readme, key).toContain(`\`--${flagName(key)}\``);
  });
});
