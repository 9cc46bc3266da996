/** The worker command's argument handling (no Redis, no model needed for these paths). */
import { describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { help, run } from '../../src/cli/commands/worker.js';
import { DsaPruneError } from '../../src/errors.js';

describe('dsa-prune worker (arguments)', () => {
  it('prints its help', async () => {
    const io = memoryIo();
    expect(await run(['--help'], io)).toBe(0);
    expect(io.stdoutText).toBe(help);
    for (const flag of ['--redis', '--model', '--concurrency', '--threads', '--lock-seconds', 'REDIS_PASSWORD']) expect(help).toContain(flag);
  });

  it('names the missing option, a bad URL and a bad number before loading anything', async () => {
    const err = (argv: string[]) => run(argv, memoryIo()).then(() => undefined, (e: unknown) => e as Error);
    expect(await err(['--model', 'm'])).toBeInstanceOf(DsaPruneError);
    expect((await err(['--model', 'm']))!.message).toMatch(/--redis/);
    expect((await err(['--redis', 'redis://127.0.0.1:1']))!.message).toMatch(/--model/);
    expect((await err(['--redis', 'http://x', '--model', 'm']))!.message).toMatch(/expected redis or rediss/);
    expect((await err(['--redis', 'redis://h', '--model', 'm', '--concurrency', '0']))!.message).toMatch(/--concurrency/);
  });
});
