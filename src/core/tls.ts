// TLS material for `wss`: the certificate and key a process serves with, and the CA it trusts
// when it connects to others (self-signed clusters pass their own CA).
import { readFileSync } from 'node:fs';

export interface TlsOptions {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

export function readTlsOptions(certPath: string | undefined, keyPath: string | undefined, caPath: string | undefined): TlsOptions | undefined {
  if (!certPath && !keyPath) return undefined;
  if (!certPath || !keyPath) throw new Error('TLS needs both --tls-cert and --tls-key');
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(error as Error).message}`);
    }
  };
  return { cert: read(certPath, 'certificate'), key: read(keyPath, 'key'), ca: caPath ? read(caPath, 'CA') : undefined };
}
