/**
 * `--plugin <module.js>` (search, prune, worker; repeatable): ES modules that register user methods with
 * `registerMethod` from 'dsa-prune', imported before the command does anything else. Their absolute paths go on to the
 * search's worker threads, which import them too (each thread has its own registry).
 */
import type { OptionSpec } from './args.js';
import { getMethod, importPlugins } from '../methods/index.js';

/** The option, shared by the commands that take it. */
export const PLUGIN_OPTION = {
  type: 'string',
  multiple: true,
  valueName: '<module.js>',
  description: 'ES module that registers a pruning method with registerMethod() from \'dsa-prune\' (repeatable); then --method <its name>',
} as const satisfies OptionSpec;

/** Import the plugins, then check that `method` (when given) is registered: a DsaPruneError `invalid-input` otherwise. */
export async function loadPlugins(files: readonly string[] | undefined, method?: string): Promise<string[]> {
  const paths = await importPlugins(files);
  if (method !== undefined) getMethod(method);
  return paths;
}
