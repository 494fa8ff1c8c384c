// Checkpoints: one folder per commit holding the replica state (safetensors) and a JSON manifest
// (config, run progress, checksum). Written atomically — temporary folder, fsync, rename, fsync
// the parent — so a crash leaves either the whole checkpoint or none. Reading verifies the
// checksum; a corrupt checkpoint is moved aside (never overwritten) and the previous one is used.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { OccamConfig } from '../config.ts';
import { decodeSafetensors } from './safetensors.ts';

export const CHECKPOINT_FORMAT = 'occam-checkpoint';
const STATE_FILE = 'state.safetensors';
const MANIFEST_FILE = 'manifest.json';

export interface CheckpointManifest<Progress> {
  format: typeof CHECKPOINT_FORMAT;
  version: 1;
  round: number;
  step: number;
  createdAt: string;
  configHash: string;
  config: OccamConfig;
  /** Everything the coordinator needs to carry on: schedule, best round, metrics so far. */
  progress: Progress;
  state: { file: string; bytes: number; sha256: string; digest: string };
}

export interface LoadedCheckpoint<Progress> {
  path: string;
  manifest: CheckpointManifest<Progress>;
  state: Buffer;
}

/** Writes one checkpoint atomically and keeps only the newest `keep`. Returns its folder. */
export function writeCheckpoint<Progress>(
  root: string,
  manifest: Omit<CheckpointManifest<Progress>, 'format' | 'version' | 'state' | 'createdAt'>,
  state: Uint8Array,
  stateDigest: string,
  keep: number,
): string {
  mkdirSync(root, { recursive: true });
  const name = checkpointName(manifest.round, manifest.step);
  const temporary = join(root, `.tmp-${name}-${process.pid}`);
  rmSync(temporary, { recursive: true, force: true });
  mkdirSync(temporary);
  const full: CheckpointManifest<Progress> = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    createdAt: new Date().toISOString(),
    ...manifest,
    state: { file: STATE_FILE, bytes: state.length, sha256: sha256(state), digest: stateDigest },
  };
  writeDurably(join(temporary, STATE_FILE), state);
  writeDurably(join(temporary, MANIFEST_FILE), Buffer.from(JSON.stringify(full, null, 1)));
  fsyncPath(temporary);
  const final = join(root, name);
  if (existsSync(final)) renameSync(final, join(root, `replaced-${name}-${Date.now()}`));
  renameSync(temporary, final);
  fsyncPath(root);
  for (const old of checkpointNames(root).slice(0, -keep)) rmSync(join(root, old), { recursive: true, force: true });
  return final;
}

/**
 * The newest checkpoint that verifies, or null when there is none. Each one that fails
 * verification is reported through `onCorrupt` and renamed `corrupt-…` so it is kept for
 * inspection and a later commit of the same round cannot overwrite it.
 */
export function readLatestCheckpoint<Progress>(
  root: string,
  onCorrupt: (path: string, reason: string) => void,
): LoadedCheckpoint<Progress> | null {
  if (!existsSync(root)) return null;
  for (const name of checkpointNames(root).reverse()) {
    const path = join(root, name);
    try {
      return { path, ...readCheckpoint<Progress>(path) };
    } catch (error) {
      onCorrupt(path, (error as Error).message);
      renameSync(path, join(root, `corrupt-${name}-${Date.now()}`));
    }
  }
  return null;
}

/** Reads and verifies one checkpoint folder; throws with the reason when anything is off. */
export function readCheckpoint<Progress>(path: string): { manifest: CheckpointManifest<Progress>; state: Buffer } {
  const manifestPath = join(path, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw new Error('manifest.json is missing');
  let manifest: CheckpointManifest<Progress>;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as CheckpointManifest<Progress>;
  } catch {
    throw new Error('manifest.json is not valid JSON');
  }
  if (manifest.format !== CHECKPOINT_FORMAT || manifest.version !== 1)
    throw new Error('manifest.json is not an Occam checkpoint manifest (version 1)');
  if (!manifest.state || typeof manifest.state.sha256 !== 'string') throw new Error('manifest.json has no state checksum');
  const statePath = join(path, manifest.state.file);
  if (!existsSync(statePath)) throw new Error(`${manifest.state.file} is missing`);
  const state = readFileSync(statePath);
  if (state.length !== manifest.state.bytes)
    throw new Error(`${manifest.state.file} has ${state.length} bytes, the manifest says ${manifest.state.bytes} (truncated?)`);
  if (sha256(state) !== manifest.state.sha256) throw new Error(`${manifest.state.file} does not match its checksum (corrupted)`);
  decodeSafetensors(state);
  return { manifest, state };
}

/** Names of the complete checkpoints, oldest first. */
export function checkpointNames(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((name) => /^ckpt-r\d{6}-s\d{12}$/.test(name))
    .sort();
}

function checkpointName(round: number, step: number): string {
  return `ckpt-r${String(round).padStart(6, '0')}-s${String(step).padStart(12, '0')}`;
}

function writeDurably(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
