/**
 * fast-check seed for every property test. CI (CI=true) runs a fixed seed so a green build stays green and a red one
 * replays exactly; local runs draw a fresh seed each time to keep exploring (a failure prints its seed). FC_SEED=<n>
 * forces one, FC_SEED=random forces a fresh one in CI.
 */
import fc from 'fast-check';

const env = process.env.FC_SEED;
const seed = env === 'random' ? undefined : env !== undefined ? Number(env) : process.env.CI ? 20261128 : undefined;
if (seed !== undefined && Number.isFinite(seed)) fc.configureGlobal({ seed });
