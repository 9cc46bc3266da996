/**
 * A private redis-server for the distributed tests: loopback only, a random free port, no persistence, killed after.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ioredisAvailable } from '../../src/search/distributed/connection.js';

/** Why the Redis tests cannot run here, or undefined when they can. */
export function redisSkipReason(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    return 'redis-server is not on PATH (install the Debian package redis-server, or run bash .ci/redis.sh start)';
  }
  if (!ioredisAvailable()) return 'the ioredis package is not installed (npm install ioredis)';
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Start redis-server on 127.0.0.1:<random port>, optionally with a password; resolves when it accepts connections. */
/** A private CA and a server certificate for 127.0.0.1 (openssl CLI), for the TLS test. */
export function makeTlsFiles(dir: string): { ca: string; cert: string; key: string } | undefined {
  const run = (args: string[]) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run(['version']).status !== 0) return undefined;
  const steps = [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=dsa-prune test CA'],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'],
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'ext.cnf'],
  ];
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  for (const s of steps) if (run(s).status !== 0) return undefined;
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

export async function startRedis(options: { password?: string; tls?: { cert: string; key: string; ca: string } } = {}): Promise<TestRedis> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'dsa-prune-redis-'));
    const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
    if (options.tls) {
      args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key);
      args.push('--tls-ca-cert-file', options.tls.ca, '--tls-auth-clients', 'no');
    } else args.push('--port', String(port));
    if (options.password) args.push('--requirepass', options.password);
    const child: ChildProcess = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const ready = await new Promise<boolean>((resolve) => {
      let out = '';
      const t = setTimeout(() => resolve(false), 10_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(t);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (!ready) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
    return {
      url: `${options.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`,
      port,
      stop: async () => {
        if (child.exitCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw new Error('could not start redis-server on a free loopback port');
}
