// Docker HEALTHCHECK for the Occam image: exits 0 when this container's process answers /healthz
// (the coordinator on OCCAM_PORT, a worker on OCCAM_RING_PORT), 1 otherwise. No token needed:
// the health endpoints are plain HTTP beside the authenticated WebSocket upgrades.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

// OCCAM_HEALTH_URL pins one URL; otherwise whichever of the two default ports answers is healthy.
const urls = process.env.OCCAM_HEALTH_URL
  ? [process.env.OCCAM_HEALTH_URL]
  : [process.env.OCCAM_PORT ?? '7070', process.env.OCCAM_RING_PORT ?? '7071'].map(
      (port) => `${process.env.OCCAM_TLS_CERT ? 'https' : 'http'}://127.0.0.1:${port}/healthz`,
    );

function healthy(url) {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? httpsRequest : httpRequest;
    // A self-signed cluster certificate is fine for a loopback liveness check.
    const req = get(url, { timeout: 4000, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

const results = await Promise.all(urls.map(healthy));
process.exit(results.some(Boolean) ? 0 : 1);
