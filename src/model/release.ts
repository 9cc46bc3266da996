/**
 * Freeing large ArrayBuffers now instead of at the next garbage collection. V8 frees an unreachable ArrayBuffer's
 * memory only when a GC runs, and nothing tells it to run before onnxruntime (whose allocations V8 does not see)
 * allocates next: the calibration's prefix reads the whole embedding table (108 MiB at SmolLM2-135M) as a session
 * input, and that garbage stayed resident while the first block session was created and ran its first batch, the
 * peak of the prune (docs/scale.md, "The peak"). Transferring a buffer through a MessageChannel whose ports are then
 * closed detaches it (its length becomes 0) and drops the only reference to its memory: freed once both ports report
 * `close`. The caller must own the buffers (no other view of them may be used afterwards).
 */
import { MessageChannel } from 'node:worker_threads';

/** Detach `buffers` and free their memory (resolves when it is freed). Duplicates are passed once. */
export async function releaseBuffers(buffers: Iterable<ArrayBuffer>): Promise<void> {
  const list = [...new Set(buffers)].filter((b) => b.byteLength > 0);
  if (list.length === 0) return;
  const { port1, port2 } = new MessageChannel();
  const closed = Promise.all([port1, port2].map((p) => new Promise<void>((resolve) => p.once('close', () => resolve()))));
  port1.postMessage(null, list);
  port1.close();
  port2.close();
  await closed;
}
