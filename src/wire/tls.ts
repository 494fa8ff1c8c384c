// TLS material for `wss`: the certificate and key a process serves with, and the CA it trusts
// when it connects to others (self-signed clusters pass their own CA). With a CA, peers must
// also present a certificate it signed: servers ask for one and refuse upgrades without it.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

export interface TlsOptions {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

export function readTlsOptions(
  certPath: string | undefined,
  keyPath: string | undefined,
  caPath: string | undefined,
): TlsOptions | undefined {
  if (!certPath && !keyPath) {
    if (caPath) throw new Error('--tls-ca needs --tls-cert and --tls-key too: every process of a TLS cluster serves TLS');
    return undefined;
  }
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

/**
 * Options for an HTTPS server. With a CA it asks every client for a certificate, but lets the
 * handshake finish without one, so token-less health probes (kubelet) still get their answer;
 * WebSocket upgrades are then checked with peerCertificateProblem.
 */
export function tlsServerOptions(tls: TlsOptions): {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: false };
}

/** Options for a wss:// client: verify the server against the CA (system roots without one) and present our certificate. */
export function tlsClientOptions(tls: TlsOptions | undefined): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {};
}

/** Why an upgrade request's client certificate is not acceptable, or null (also when no CA is configured). */
export function peerCertificateProblem(request: IncomingMessage, tls: TlsOptions | undefined): string | null {
  if (!tls?.ca) return null;
  const socket = request.socket as TLSSocket;
  if (socket.authorized) return null;
  return `client certificate refused: ${String(socket.authorizationError ?? 'none presented')}`;
}
