/**
 * The signature verifier threads give the very answers of the inline check, in the order asked,
 * for both curves and for good, tampered, malleable and foreign signatures.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { expect } from "chai";
import type { Hex } from "viem";
import { createSignatureVerifier } from "../../services/oracle/verifier.ts";
import { readingDigest } from "../../services/shared/eip712.ts";
import {
  P256_N,
  SECP256K1_N,
  publicKeyOf,
  signReading,
  verifyDigestSignature,
  type DeviceSigningKey,
  type DevicePublicKey,
} from "../../services/shared/signatures.ts";

const domain = {
  chainId: 31337,
  verifyingContract: "0x5FbDB2315678afecb367f032d93F642f64180aa3" as Hex,
};

/** s replaced by n - s: the same signature in its malleable high-s form. */
function highS(signature: Hex, n: bigint): Hex {
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  return `${signature.slice(0, 66)}${(n - s).toString(16).padStart(64, "0")}${signature.slice(130)}` as Hex;
}

describe("signature verifier threads", () => {
  const k1 = (): DeviceSigningKey => ({
    keyType: "secp256k1",
    privateKey: `0x${randomBytes(32).toString("hex")}` as Hex,
  });
  const p256 = (): DeviceSigningKey => ({
    keyType: "p256",
    privateKey: generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey,
  });
  // Per curve: the signing key and another key of the same curve.
  const pairs: [DeviceSigningKey, DeviceSigningKey][] = [
    [k1(), k1()],
    [p256(), p256()],
  ];
  const checks: { digest: Uint8Array; signature: string; key: DevicePublicKey }[] = [];
  for (let i = 0; i < 300; i++) {
    const [key, sibling] = pairs[i % 2]!;
    const reading = {
      agreementId: BigInt(i % 7),
      machineId: `0x${"cd".repeat(32)}` as Hex,
      cumulativeUnits: BigInt(i + 1),
      timestamp: 1_764_000_000n,
    };
    const digest = readingDigest(domain, reading);
    let signature = signReading(domain, reading, key);
    let publicKey = publicKeyOf(key);
    const kind = i % 5;
    // 0: good; 1: tampered r; 2: high s; 3: another key of the curve; 4: the other curve's key.
    if (kind === 1) signature = `${signature.slice(0, 10)}00${signature.slice(12)}` as Hex;
    if (kind === 2) signature = highS(signature, key.keyType === "p256" ? P256_N : SECP256K1_N);
    if (kind === 3) publicKey = publicKeyOf(sibling);
    if (kind === 4) publicKey = publicKeyOf(pairs[(i + 1) % 2]![0]);
    checks.push({ digest, signature, key: publicKey });
  }

  it("answers as the inline check does, in order, across several threads", async () => {
    const verifier = createSignatureVerifier(2);
    try {
      const answers = await Promise.all(
        checks.map((c) => verifier.verify(c.digest, c.signature, c.key)),
      );
      const expected = checks.map((c) => verifyDigestSignature(c.digest, c.signature, c.key));
      expect(answers).to.deep.equal(expected);
      const reasons = new Set(expected.map((r) => (r.ok ? "ok" : r.reason)));
      expect([...reasons].sort()).to.deep.equal(["bad_signature", "malleable_signature", "ok"]);
    } finally {
      await verifier.close();
    }
  });

  it("replaces a thread that fails: the checks it held fail, the next ones are answered", async () => {
    const failures: unknown[] = [];
    const verifier = createSignatureVerifier(1, (error) => failures.push(error));
    try {
      const c = checks[1]!; // a good P-256 check
      // Not a key at all: the check throws on the thread and takes it down.
      const broken = { keyType: "p256", x: "0xzz", y: "0x00" } as unknown as DevicePublicKey;
      let error: unknown;
      await verifier.verify(c.digest, c.signature, broken).catch((e) => (error = e));
      expect(error, "the check the thread held fails").to.be.instanceOf(Error);
      expect(failures).to.have.length(1);
      expect(await verifier.verify(c.digest, c.signature, c.key)).to.deep.equal(
        verifyDigestSignature(c.digest, c.signature, c.key),
      );
    } finally {
      await verifier.close();
    }
  });

  it("checks inline with no threads, and refuses work once closed", async () => {
    const inline = createSignatureVerifier(0);
    const c = checks[0]!;
    expect(await inline.verify(c.digest, c.signature, c.key)).to.deep.equal(
      verifyDigestSignature(c.digest, c.signature, c.key),
    );
    const threaded = createSignatureVerifier(1);
    await threaded.close();
    let refused: unknown;
    await threaded.verify(c.digest, c.signature, c.key).catch((error) => (refused = error));
    expect((refused as Error).message).to.match(/closed/);
  });
});
