// The cluster token: every WebSocket (worker→coordinator and worker→worker) presents it in the
// upgrade request's Authorization header, and the receiver compares it in constant time. The
// per-connection and per-generation keys (liveness, ring) are made and compared here too.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The header a connecting process sends. */
export function authorizationHeader(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** Whether an upgrade request carries `token`; constant time in the token's contents. */
export function requestHasToken(request: IncomingMessage, token: string): boolean {
  const header = request.headers.authorization ?? '';
  const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
  return tokensEqual(presented, token);
}

/** Constant-time comparison: hashing first makes the lengths equal, so nothing leaks through timing. */
export function tokensEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length > 0;
}

/** A fresh random key (144 bits, URL-safe): a liveness key, a ring generation's key. */
export function randomKey(): string {
  return randomBytes(18).toString('base64url');
}
