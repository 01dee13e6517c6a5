/**
 * Device-signature checks off the event loop. Each check costs tens of microseconds of native code
 * (libsecp256k1 recovery, OpenSSL P-256); on the event loop they would hold up MQTT, the journal and
 * the submitter. Here they run on worker threads: the checks asked for in one event-loop turn go to a
 * worker as one message, and come back as one. With `threads: 0` they run inline.
 */
import { Worker } from "node:worker_threads";
import {
  verifyDigestSignature,
  type DevicePublicKey,
  type VerifyResult,
} from "../shared/signatures.ts";

export interface SignatureCheck {
  digest: Uint8Array;
  signature: string;
  key: DevicePublicKey;
}

export interface SignatureVerifier {
  verify(digest: Uint8Array, signature: string, key: DevicePublicKey): Promise<VerifyResult>;
  close(): Promise<void>;
}

/** Checks in one message to a worker, at most; more wait for the next message. */
const MAX_BATCH = 256;

interface Job {
  check: SignatureCheck;
  resolve(result: VerifyResult): void;
  reject(error: unknown): void;
}

interface Lane {
  worker: Worker;
  /** Batches sent and not answered, oldest first. */
  sent: Job[][];
  pending: number;
}

export function createSignatureVerifier(
  threads: number,
  onWorkerError?: (error: unknown) => void,
): SignatureVerifier {
  if (threads <= 0) {
    return {
      verify: async (digest, signature, key) => verifyDigestSignature(digest, signature, key),
      close: async () => {},
    };
  }

  let closed = false;
  const queue: Job[] = [];
  let scheduled = false;
  const lanes: Lane[] = [];

  function spawn(index: number): Lane {
    const worker = new Worker(new URL("./verify-worker.ts", import.meta.url), {
      name: `signature-verifier-${index}`,
    });
    const lane: Lane = { worker, sent: [], pending: 0 };
    worker.on("message", (results: VerifyResult[]) => {
      const batch = lane.sent.shift();
      if (!batch) return;
      lane.pending -= batch.length;
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
    });
    const fail = (error: unknown) => {
      // The checks in hand fail (their readings stay unacknowledged and come again); a new worker
      // takes the lane's place.
      for (const batch of lane.sent.splice(0)) for (const job of batch) job.reject(error);
      lane.pending = 0;
      if (closed) return;
      onWorkerError?.(error);
      const replacement = spawn(index);
      lanes[index] = replacement;
    };
    worker.on("error", fail);
    worker.on("exit", (code) => {
      if (!closed && lanes[index] === lane) fail(new Error(`signature worker exited with ${code}`));
    });
    worker.unref();
    return lane;
  }

  for (let i = 0; i < threads; i++) lanes.push(spawn(i));

  function dispatch(): void {
    scheduled = false;
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      let lane = lanes[0]!;
      for (const candidate of lanes) if (candidate.pending < lane.pending) lane = candidate;
      lane.sent.push(batch);
      lane.pending += batch.length;
      lane.worker.postMessage(batch.map((job) => job.check));
    }
  }

  return {
    verify(digest, signature, key) {
      if (closed) return Promise.reject(new Error("the signature verifier is closed"));
      return new Promise((resolve, reject) => {
        queue.push({ check: { digest, signature, key }, resolve, reject });
        if (queue.length >= MAX_BATCH) dispatch();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(dispatch);
        }
      });
    },
    async close() {
      closed = true;
      const error = new Error("the signature verifier is closed");
      for (const job of queue.splice(0)) job.reject(error);
      await Promise.all(
        lanes.map(async (lane) => {
          for (const batch of lane.sent.splice(0)) for (const job of batch) job.reject(error);
          await lane.worker.terminate();
        }),
      );
    },
  };
}
