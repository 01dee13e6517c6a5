/**
 * Keys and signatures made entirely outside the SDK: a P-256 key from Node's crypto exported as
 * PKCS#8 PEM and signed with Node's crypto (raw r‖s and the DER that openssl produces), and a
 * secp256k1 key generated and used by @noble/curves (65-byte r‖s‖v and 64-byte EIP-2098). The
 * EIP-712 digest is computed with viem from the documented type, and the readings travel as
 * hand-written MQTT JSON through the real oracle onto the chain.
 */
import { expect } from "chai";
import { createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { hashTypedData, keccak256, toHex, type Hex } from "viem";
import { loadOracleConfig } from "../../services/oracle/config.ts";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { parseDeviceKey, registrationData } from "../../services/device/keys.ts";
import type { DeviceSigningKey } from "../../services/shared/signatures.ts";
import { MachineSide, startHarness, type Harness, type TestMachine } from "../oracle/harness.ts";

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** The documented typed data, written out here rather than taken from the SDK. */
function digestOf(h: Harness, m: TestMachine, cumulativeUnits: bigint, timestamp: number): Hex {
  return hashTypedData({
    domain: {
      name: "PayPerUse",
      version: "1",
      chainId: h.domain.chainId,
      verifyingContract: h.payPerUse,
    },
    types: {
      Reading: [
        { name: "agreementId", type: "uint256" },
        { name: "machineId", type: "bytes32" },
        { name: "cumulativeUnits", type: "uint256" },
        { name: "timestamp", type: "uint64" },
      ],
    },
    primaryType: "Reading",
    message: {
      agreementId: m.agreementId,
      machineId: m.machineId,
      cumulativeUnits,
      timestamp: BigInt(timestamp),
    },
  });
}

/** Minimal DER reader for an ECDSA signature: the s integer. */
function derS(der: Buffer): bigint {
  const rLength = der[3]!;
  const sLength = der[5 + rLength]!;
  return BigInt(`0x${der.subarray(6 + rLength, 6 + rLength + sLength).toString("hex")}`);
}

function rawJson(m: TestMachine, cumulativeUnits: bigint, timestamp: number, signature: string) {
  return `{"v":1,"agreementId":"${m.agreementId}","machineId":"${m.machineId}","cumulativeUnits":"${cumulativeUnits}","timestamp":${timestamp},"signature":"${signature}"}`;
}

describe("readings signed outside the SDK", function () {
  let h: Harness;
  let oracle: Oracle;
  let side: MachineSide;
  let p256: TestMachine;
  let k1: TestMachine;

  // P-256: Node's crypto, exported as PKCS#8 PEM as a secure element's provisioning tool would.
  const p256Pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const p256Pem = p256Pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  // secp256k1: @noble/curves.
  const k1Secret = secp256k1.utils.randomSecretKey();

  before(async () => {
    // The owner registers the public parts: the PEM read as an operator would, the noble key's scalar.
    const keys: DeviceSigningKey[] = [
      parseDeviceKey(p256Pem),
      { keyType: "secp256k1", privateKey: toHex(k1Secret) },
    ];
    h = await startHarness(keys);
    [p256, k1] = h.machines as [TestMachine, TestMachine];
    oracle = createOracle(
      loadOracleConfig({
        RPC_URL: h.chain.rpcUrl,
        CONTRACT_ADDRESS: h.payPerUse,
        ORACLE_PRIVATE_KEY: h.oracleKey,
        DATA_DIR: "memory",
        HEALTH_PORT: "-1",
        BATCH_INTERVAL_MS: "200",
        CHAIN_POLL_MS: "200",
        LOG_LEVEL: "warn",
      }),
    );
    await oracle.start();
    side = await MachineSide.connect(oracle.brokerUrl, [p256, k1], 4);
  });

  after(async () => {
    await side?.close();
    await oracle?.stop();
    await h?.stop();
  });

  const now = () => Math.floor(Date.now() / 1000) + h.clockOffset;
  const settled =
    (m: TestMachine, units: bigint) =>
    (s: { machineId: string; state: string; cumulativeUnits?: string }) =>
      s.machineId === m.machineId &&
      s.state === "settled" &&
      s.cumulativeUnits === units.toString();

  it("registers what the independent tools say the public keys are", () => {
    const jwk = createPublicKey(p256Pem).export({ format: "jwk" });
    const reg = registrationData(parseDeviceKey(p256Pem), p256.machineId);
    expect(reg.x).to.equal(toHex(Buffer.from(jwk.x!, "base64url")));
    expect(reg.y).to.equal(toHex(Buffer.from(jwk.y!, "base64url")));
    const uncompressed = secp256k1.getPublicKey(k1Secret, false);
    const address = `0x${keccak256(uncompressed.subarray(1)).slice(-40)}`;
    const k1Reg = registrationData(
      { keyType: "secp256k1", privateKey: toHex(k1Secret) },
      k1.machineId,
    );
    expect(k1Reg.x).to.equal(`0x${address.slice(2).padStart(64, "0")}`);
  });

  it("computes the same digest as the contract", async () => {
    const timestamp = now();
    const digest = digestOf(h, k1, 1_234n, timestamp);
    const onChain = await h.client.readContract({
      address: h.payPerUse,
      abi: h.abi,
      functionName: "readingDigest",
      args: [
        {
          agreementId: k1.agreementId,
          machineId: k1.machineId,
          cumulativeUnits: 1_234n,
          timestamp: BigInt(timestamp),
        },
      ],
    });
    expect(onChain).to.equal(digest);
  });

  it("charges P-256 readings signed by Node's crypto from the PEM, as r‖s and as DER", async () => {
    // Raw r‖s (IEEE P1363), s moved to the lower half as the protocol requires.
    let timestamp = now();
    const digest1 = Buffer.from(digestOf(h, p256, 1_000n, timestamp).slice(2), "hex");
    const rs = sign("sha256", digest1, { key: p256Pem, dsaEncoding: "ieee-p1363" });
    const s = BigInt(`0x${rs.subarray(32).toString("hex")}`);
    if (s > P256_N / 2n)
      rs.set(Buffer.from((P256_N - s).toString(16).padStart(64, "0"), "hex"), 32);
    await side.publish(p256, rawJson(p256, 1_000n, timestamp, `0x${rs.toString("hex")}`));
    await side.waitFor(settled(p256, 1_000n), "P-256 r‖s settled");

    // DER, as `openssl dgst -sha256 -sign` writes it; signing again until s is low (random nonces).
    timestamp = now();
    const digest2 = Buffer.from(digestOf(h, p256, 2_500n, timestamp).slice(2), "hex");
    let der = sign("sha256", digest2, p256Pem);
    while (derS(der) > P256_N / 2n) der = sign("sha256", digest2, p256Pem);
    await side.publish(p256, rawJson(p256, 2_500n, timestamp, `0x${der.toString("hex")}`));
    await side.waitFor(settled(p256, 2_500n), "P-256 DER settled");

    const agreement = await h.agreement(p256.agreementId);
    expect(agreement.cumulativeUnits).to.equal(2_500n);
    expect(agreement.totalCharged).to.equal(625_000n);
  });

  it("charges secp256k1 readings signed by @noble/curves, as r‖s‖v and as EIP-2098", async () => {
    let timestamp = now();
    const digest1 = digestOf(h, k1, 3_000n, timestamp);
    // noble's "recovered" format is recovery byte first; Ethereum puts v = 27 + recovery last.
    const recovered = secp256k1.sign(Buffer.from(digest1.slice(2), "hex"), k1Secret, {
      prehash: false,
      format: "recovered",
    });
    const rsv = `0x${Buffer.from(recovered.subarray(1)).toString("hex")}${(27 + recovered[0]!).toString(16)}`;
    await side.publish(k1, rawJson(k1, 3_000n, timestamp, rsv));
    await side.waitFor(settled(k1, 3_000n), "secp256k1 r‖s‖v settled");

    timestamp = now();
    const digest2 = digestOf(h, k1, 7_000n, timestamp);
    const sig2 = secp256k1.sign(Buffer.from(digest2.slice(2), "hex"), k1Secret, {
      prehash: false,
      format: "recovered",
    });
    // EIP-2098: the recovery bit in the top bit of s.
    const compact = Buffer.from(sig2.subarray(1));
    compact[32]! |= sig2[0]! << 7;
    await side.publish(k1, rawJson(k1, 7_000n, timestamp, `0x${compact.toString("hex")}`));
    await side.waitFor(settled(k1, 7_000n), "secp256k1 EIP-2098 settled");

    const agreement = await h.agreement(k1.agreementId);
    expect(agreement.cumulativeUnits).to.equal(7_000n);
    expect(agreement.totalCharged).to.equal(1_750_000n);
  });

  it("refuses a signature over another domain, and charges nothing for it", async () => {
    const timestamp = now();
    const wrong = hashTypedData({
      domain: { name: "PayPerUse", version: "1", chainId: 1, verifyingContract: h.payPerUse },
      types: {
        Reading: [
          { name: "agreementId", type: "uint256" },
          { name: "machineId", type: "bytes32" },
          { name: "cumulativeUnits", type: "uint256" },
          { name: "timestamp", type: "uint64" },
        ],
      },
      primaryType: "Reading",
      message: {
        agreementId: k1.agreementId,
        machineId: k1.machineId,
        cumulativeUnits: 9_000n,
        timestamp: BigInt(timestamp),
      },
    });
    const sig = secp256k1.sign(Buffer.from(wrong.slice(2), "hex"), k1Secret, {
      prehash: false,
      format: "recovered",
    });
    const rsv = `0x${Buffer.from(sig.subarray(1)).toString("hex")}${(27 + sig[0]!).toString(16)}`;
    await side.publish(k1, rawJson(k1, 9_000n, timestamp, rsv));
    await side.waitFor(
      (s) => s.machineId === k1.machineId && s.state === "rejected" && s.reason === "bad_signature",
      "bad_signature",
    );
    expect((await h.agreement(k1.agreementId)).cumulativeUnits).to.equal(7_000n);
  });
});
