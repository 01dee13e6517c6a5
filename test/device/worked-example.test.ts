/**
 * The worked example in docs/device.md cannot drift: the section equals what the generating script
 * prints, every value is recomputed with independent code (viem, @noble/curves, Node's crypto), the
 * contract computes the same digests and charges both documented payloads, the SDK reproduces the
 * secp256k1 payload byte for byte, and the openssl recipe runs as written.
 */
import { expect } from "chai";
import { execFileSync, spawnSync } from "node:child_process";
import { createPublicKey, verify } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { p256 } from "@noble/curves/nist.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import {
  createPublicClient,
  createWalletClient,
  getAddress,
  hashDomain,
  hashStruct,
  hashTypedData,
  http,
  parseEventLogs,
  recoverAddress,
  type Abi,
  type Address,
  type Hex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  BEGIN_MARKER,
  DOC_PATH,
  END_MARKER,
  EXAMPLE,
  computeExample,
  exampleP256Key,
  exampleSecp256k1Key,
  opensslRecipe,
  renderExample,
} from "../../scripts/docs/device-example.ts";
import { Meter } from "../../services/device/meter.ts";
import { loadArtifact, payPerUseAbi } from "../../services/shared/artifacts.ts";
import { chainFor } from "../../services/shared/deployment.ts";
import { deploySuite, startDevChain } from "../../services/shared/devchain.ts";
import { hexToBytes } from "../../services/shared/eip712.ts";
import type { ReadingMessage } from "../../services/shared/protocol.ts";
import {
  onChainDeviceKey,
  publicKeyOf,
  verifyDigestSignature,
} from "../../services/shared/signatures.ts";

const doc = readFileSync(DOC_PATH, "utf8");
const section = doc.slice(doc.indexOf(BEGIN_MARKER), doc.indexOf(END_MARKER) + END_MARKER.length);
/** The two MQTT payloads exactly as the doc prints them. */
const payloads = [...section.matchAll(/```json\n(.*)\n```/g)].map(
  (m) => JSON.parse(m[1]!) as ReadingMessage,
);
const e = computeExample();
const types = {
  Reading: [
    { name: "agreementId", type: "uint256" },
    { name: "machineId", type: "bytes32" },
    { name: "cumulativeUnits", type: "uint256" },
    { name: "timestamp", type: "uint64" },
  ],
} as const;
const domain = {
  name: "PayPerUse",
  version: "1",
  chainId: 31337,
  verifyingContract: EXAMPLE.domain.verifyingContract as Address,
} as const;

function viemDigest(message: ReadingMessage): Hex {
  return hashTypedData({
    domain,
    types,
    primaryType: "Reading",
    message: {
      agreementId: BigInt(message.agreementId),
      machineId: message.machineId as Hex,
      cumulativeUnits: BigInt(message.cumulativeUnits),
      timestamp: BigInt(message.timestamp),
    },
  });
}

describe("worked example in docs/device.md", function () {
  it("is exactly what scripts/docs/device-example.ts generates", () => {
    expect(doc).to.contain(BEGIN_MARKER).and.contain(END_MARKER);
    expect(section, "run: npx tsx scripts/docs/device-example.ts").to.equal(renderExample());
    expect(payloads).to.have.length(2);
    expect(payloads[0]!.signature).to.equal(e.secp256k1.signature);
    expect(payloads[1]!.signature).to.equal(e.p256.signature);
  });

  it("agrees with independent implementations of EIP-712, secp256k1 and P-256", async () => {
    expect(
      hashDomain({
        domain: { ...domain, chainId: 31337n },
        types: {
          EIP712Domain: [
            { name: "name", type: "string" },
            { name: "version", type: "string" },
            { name: "chainId", type: "uint256" },
            { name: "verifyingContract", type: "address" },
          ],
        },
      }),
    ).to.equal(e.domain.separator);
    for (const [i, r] of [e.secp256k1, e.p256].entries()) {
      const message = payloads[i]!;
      expect(
        hashStruct({
          data: {
            agreementId: BigInt(message.agreementId),
            machineId: message.machineId as Hex,
            cumulativeUnits: BigInt(message.cumulativeUnits),
            timestamp: BigInt(message.timestamp),
          },
          primaryType: "Reading",
          types,
        }),
      ).to.equal(r.structHash);
      expect(viemDigest(message)).to.equal(r.digest);
      expect(section).to.contain(r.digest).and.contain(r.structHash).and.contain(r.digestPreimage);
    }
    const k1 = payloads[0]!;
    // secp256k1: the documented signature recovers to the documented address, and @noble/curves
    // signing the digest with the test key gives the same bytes (RFC 6979).
    const digest1 = viemDigest(k1);
    const noble = secp256k1.sign(hexToBytes(digest1), hexToBytes(EXAMPLE.secp256k1.privateKey), {
      prehash: false,
      format: "recovered",
    });
    expect(
      `0x${Buffer.from(noble.subarray(1)).toString("hex")}${(27 + noble[0]!).toString(16)}`,
    ).to.equal(k1.signature);
    const address = await recoverAddress({ hash: digest1, signature: k1.signature as Hex });
    expect(address).to.equal(getAddress(e.secp256k1.address));
    // P-256: Node's crypto verifies r‖s under ECDSA-SHA256 over the digest with the PEM's public
    // key, and so does @noble/curves with the documented coordinates.
    const pm = payloads[1]!;
    const digest2 = hexToBytes(viemDigest(pm));
    const pub = createPublicKey(e.p256.pem);
    const ok = verify(
      "sha256",
      digest2,
      { key: pub, dsaEncoding: "ieee-p1363" },
      hexToBytes(pm.signature),
    );
    expect(ok).to.equal(true);
    const point = hexToBytes(`0x04${e.p256.x.slice(2)}${e.p256.y.slice(2)}`);
    expect(p256.verify(hexToBytes(pm.signature), digest2, point)).to.equal(true);
    const jwk = pub.export({ format: "jwk" });
    expect(e.p256.x).to.equal(`0x${Buffer.from(jwk.x!, "base64url").toString("hex")}`);
    expect(e.p256.y).to.equal(`0x${Buffer.from(jwk.y!, "base64url").toString("hex")}`);
  });

  it("is what the SDK publishes for the secp256k1 reading, byte for byte", () => {
    const meter = new Meter({
      machineId: e.secp256k1.machineId,
      key: exampleSecp256k1Key(),
      domain: EXAMPLE.domain,
      now: () => Number(EXAMPLE.timestamp),
    });
    meter.add(EXAMPLE.secp256k1.agreementId, EXAMPLE.secp256k1.cumulativeUnits);
    expect(JSON.stringify(meter.sign(EXAMPLE.secp256k1.agreementId))).to.equal(
      JSON.stringify(payloads[0]),
    );
    // P-256 signatures of the SDK use random nonces: different bytes, same digest, valid.
    const pm = payloads[1]!;
    const p256Meter = new Meter({
      machineId: e.p256.machineId,
      key: exampleP256Key(),
      domain: EXAMPLE.domain,
      now: () => Number(EXAMPLE.timestamp),
    });
    p256Meter.add(EXAMPLE.p256.agreementId, EXAMPLE.p256.cumulativeUnits);
    const signed = p256Meter.sign(EXAMPLE.p256.agreementId);
    expect({ ...signed, signature: pm.signature }).to.deep.equal(pm);
    expect(
      verifyDigestSignature(
        hexToBytes(e.p256.digest),
        signed.signature,
        publicKeyOf(exampleP256Key()),
      ).ok,
    ).to.equal(true);
  });

  it("is charged on-chain: the contract at the documented address computes the same digests and records both payloads", async () => {
    // A fresh embedded chain whose clock starts a day before the example's timestamp.
    const chain = await startDevChain({
      initialDate: new Date((Number(EXAMPLE.timestamp) - 86_400) * 1000),
    });
    try {
      const [deployer, bank, owner, lessee, oracle] = chain.accounts;
      const deployment = await deploySuite({
        rpcUrl: chain.rpcUrl,
        deployerKey: deployer!.privateKey,
        bank: bank!.address,
        oracleSigners: [oracle!.address],
        threshold: 1,
      });
      expect(getAddress(deployment.payPerUse)).to.equal(EXAMPLE.domain.verifyingContract);
      expect(deployment.chainId).to.equal(EXAMPLE.domain.chainId);
      const chainDef = await chainFor(chain.rpcUrl);
      const client = createPublicClient({ chain: chainDef, transport: http(chain.rpcUrl) });
      const abi = payPerUseAbi();
      const send = async (
        key: Hex,
        to: Address,
        contractAbi: Abi,
        functionName: string,
        args: unknown[],
      ) => {
        const wallet = createWalletClient({
          account: privateKeyToAccount(key),
          chain: chainDef,
          transport: http(chain.rpcUrl),
        });
        const hash = await wallet.writeContract({
          address: to,
          abi: contractAbi,
          functionName,
          args,
        } as never);
        const receipt = await client.waitForTransactionReceipt({ hash });
        expect(receipt.status, functionName).to.equal("success");
        return receipt;
      };

      const readings = payloads.map((p) => ({
        agreementId: BigInt(p.agreementId),
        machineId: p.machineId as Hex,
        cumulativeUnits: BigInt(p.cumulativeUnits),
        timestamp: BigInt(p.timestamp),
      }));
      for (const [i, reading] of readings.entries()) {
        const onChain = await client.readContract({
          address: deployment.payPerUse,
          abi,
          functionName: "readingDigest",
          args: [reading],
        });
        expect(onChain).to.equal([e.secp256k1, e.p256][i]!.digest);
      }

      const tokenAbi = loadArtifact("MockEURC").abi;
      await send(deployer!.privateKey, deployment.token, tokenAbi, "mint", [
        lessee!.address,
        10n ** 12n,
      ]);
      await send(lessee!.privateKey, deployment.token, tokenAbi, "approve", [
        deployment.payPerUse,
        10n ** 12n,
      ]);
      const keys = [exampleSecp256k1Key(), exampleP256Key()];
      for (const [i, reading] of readings.entries()) {
        await send(owner!.privateKey, deployment.payPerUse, abi, "registerMachine", [
          reading.machineId,
          owner!.address,
          0,
          0n,
          onChainDeviceKey(keys[i]),
        ]);
        await send(owner!.privateKey, deployment.payPerUse, abi, "publishTariff", [
          reading.machineId,
          {
            token: deployment.token,
            unit: "kWh",
            price: 250_000n,
            unitScale: 1_000n,
            tiers: [],
            minimumCharge: 0n,
            baseFee: 0n,
            period: 0n,
          },
        ]);
        await send(lessee!.privateKey, deployment.payPerUse, abi, "openAgreement", [
          {
            machineId: reading.machineId,
            tariffVersion: 1,
            deposit: 100_000_000n,
            endTime: EXAMPLE.timestamp + 365n * 86_400n,
            spendingCap: 0n,
            capPeriod: 0n,
            lowBalanceThreshold: 0n,
            disputeWindow: 86_400n,
            mandateRef: `0x${"00".repeat(32)}`,
          },
        ]);
      }
      await chain.provider.request({
        method: "evm_setNextBlockTimestamp",
        params: [Number(EXAMPLE.timestamp) + 60],
      });
      // The documented signatures, exactly as the payloads carry them.
      const receipt = await send(oracle!.privateKey, deployment.payPerUse, abi, "record", [
        readings.map((reading, i) => ({ reading, signature: payloads[i]!.signature })),
      ]);
      const recorded = parseEventLogs({
        abi,
        logs: receipt.logs,
        eventName: "UsageRecorded",
      }) as unknown as {
        args: { agreementId: bigint; cumulativeUnits: bigint };
      }[];
      expect(
        parseEventLogs({ abi, logs: receipt.logs, eventName: "ReadingSkipped" }),
      ).to.have.length(0);
      expect(recorded.map((r) => [r.args.agreementId, r.args.cumulativeUnits])).to.deep.equal([
        [1n, 1_500n],
        [2n, 42_000n],
      ]);
    } finally {
      await chain.stop();
    }
  });

  it("openssl recipe signs the P-256 reading so that the oracle's verification accepts it", function () {
    const missing = ["openssl", "xxd", "bc"].filter(
      (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
    );
    if (missing.length > 0) {
      console.log(`    ${missing.join(", ")} not installed: skipping the openssl recipe`);
      this.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), "ppu-openssl-"));
    try {
      writeFileSync(join(dir, "key.pem"), `${e.p256.pem}\n`, { mode: 0o600 });
      const recipe = opensslRecipe();
      expect(section).to.contain(recipe);
      // The recipe as documented; only the final publish goes nowhere.
      execFileSync("bash", ["-euo", "pipefail", "-c", `mosquitto_pub() { :; }\n${recipe}`], {
        cwd: dir,
      });
      const produced = JSON.parse(
        readFileSync(join(dir, "reading.json"), "utf8"),
      ) as ReadingMessage;
      expect({ ...produced, signature: "" }).to.deep.equal({ ...payloads[1], signature: "" });
      expect(produced.signature).to.match(/^0x30/);
      const checked = verifyDigestSignature(
        hexToBytes(e.p256.digest),
        produced.signature,
        publicKeyOf(exampleP256Key()),
      );
      expect(checked.ok, JSON.stringify(checked)).to.equal(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
