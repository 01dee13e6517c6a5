/**
 * A signature-verifier thread: takes a batch of checks, answers with their results in order.
 */
import { parentPort } from "node:worker_threads";
import { verifyDigestSignature } from "../shared/signatures.ts";
import type { SignatureCheck } from "./verifier.ts";

parentPort!.on("message", (batch: SignatureCheck[]) => {
  parentPort!.postMessage(
    batch.map(({ digest, signature, key }) => verifyDigestSignature(digest, signature, key)),
  );
});
